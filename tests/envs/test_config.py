"""Configs are validated on construction with errors naming the field and its range; overrides route."""

import dataclasses

import gymnasium as gym
import pytest

from recsim_env import PRESETS, CatalogConfig, EnvConfig, UserConfig, make_config
from recsim_env.config import all_field_names


@pytest.mark.parametrize("cls, field, value, fragment", [
    (CatalogConfig, "n_items", 50, "CatalogConfig.n_items=50 is out of range: allowed [100, 100000]"),
    (CatalogConfig, "n_items", 200_000, "allowed [100, 100000]"),
    (CatalogConfig, "n_topics", 1, "CatalogConfig.n_topics=1 is out of range: allowed [2, 50]"),
    (UserConfig, "hazard_base", 0.0, "UserConfig.hazard_base=0.0 is out of range: allowed (0.0, 1.0]"),
    (UserConfig, "satiation_decay", float("nan"), "UserConfig.satiation_decay=nan is out of range"),
])
def test_out_of_range_names_field_and_range(cls, field, value, fragment):
    with pytest.raises(ValueError) as err:
        cls(**{field: value})
    assert fragment in str(err.value)


def test_wrong_types_are_rejected():
    with pytest.raises(TypeError, match="CatalogConfig.n_items must be an integer"):
        CatalogConfig(n_items=1000.5)
    with pytest.raises(TypeError, match="CatalogConfig.n_topics must be a number"):
        CatalogConfig(n_topics="ten")
    with pytest.raises(TypeError, match="EnvConfig.observe_user_state must be a bool"):
        EnvConfig(observe_user_state="yes")


def test_cross_field_checks():
    with pytest.raises(ValueError, match="slate_size=11 is out of range"):
        EnvConfig(slate_size=11)
    with pytest.raises(ValueError, match="max_budget=10.0 is out of range"):
        EnvConfig(user=UserConfig(initial_budget=20.0, max_budget=10.0))
    with pytest.raises(ValueError, match="reward='likes'"):
        EnvConfig(reward="likes")
    with pytest.raises(ValueError, match="choice_model='probit'"):
        make_config(choice_model="probit")


def test_leaving_probability_at_full_boredom_must_be_a_probability():
    fragment = ("UserConfig.hazard_base + UserConfig.hazard_boredom = 0.5 + 0.6 = 1.1 is out of range: "
                "allowed (0.0, 1.0]")
    with pytest.raises(ValueError) as err:
        UserConfig(hazard_base=0.5, hazard_boredom=0.6)
    assert fragment in str(err.value)
    with pytest.raises(ValueError, match=r"hazard_base \+ UserConfig.hazard_boredom"):
        gym.make("recsim_env/InterestDrift-v0", hazard_boredom=0.999)  # the default hazard_base is 0.005
    edge = UserConfig(hazard_base=0.25, hazard_boredom=0.75)
    assert edge.hazard_base + edge.hazard_boredom == 1.0


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        EnvConfig().n_candidates = 5


def test_flat_overrides_route_to_their_component():
    cfg = make_config("default", n_items=500, satiation_gain=0.5, choice_model="cascade", slate_size=2)
    assert cfg.catalog.n_items == 500 and cfg.user.satiation_gain == 0.5
    assert cfg.choice.choice_model == "cascade" and cfg.slate_size == 2
    assert cfg.catalog.n_topics == PRESETS["default"].catalog.n_topics


def test_every_field_is_overridable_through_gym_make():
    env = gym.make("recsim_env/InterestDrift-v0", n_items=300, n_topics=4, history_length=3, observe_user_state=True)
    cfg = env.unwrapped.config
    assert (cfg.catalog.n_items, cfg.catalog.n_topics, cfg.history_length) == (300, 4, 3)
    assert env.observation_space.shape == (3 * (4 + 5) + 10 * (4 + 3) + 2 + 2 * 4 + 1,)
    assert {"n_items", "refill_rate", "click_appeal_weight", "watch_bias", "horizon_days"} <= all_field_names()


def test_unknown_override_and_preset():
    with pytest.raises(TypeError, match="unknown config field 'n_itemz'"):
        gym.make("recsim_env/InterestDrift-v0", n_itemz=10)
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        make_config("nope")


def test_invalid_override_through_make_names_the_field():
    with pytest.raises(ValueError, match=r"CatalogConfig.n_items=10 is out of range: allowed \[100, 100000\]"):
        gym.make("recsim_env/InterestDrift-v0", n_items=10)


def test_presets_are_valid_and_distinct():
    assert PRESETS["slate"].slate_size > 1
    assert PRESETS["cross_session"].session.multi_session
    assert not PRESETS["default"].session.multi_session
