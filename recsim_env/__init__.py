"""recsim_env: Gymnasium environments with simulated users whose interests drift.

Importing the package registers the environment ids (idempotently).
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from recsim_env.catalog import Catalog, make_catalog
from recsim_env.config import (
    PRESETS, CatalogConfig, ChoiceConfig, EnvConfig, ResponseConfig, SessionConfig, UserConfig, make_config,
)
from recsim_env.envs import RecommendationEnv, RecommendationVectorEnv
from recsim_env.observation import ObservationLayout
from recsim_env.simulator import Simulator, StepOutcome

__all__ = [
    "PRESETS", "Catalog", "CatalogConfig", "ChoiceConfig", "EnvConfig", "ObservationLayout",
    "RecommendationEnv", "RecommendationVectorEnv", "ResponseConfig", "SessionConfig", "Simulator",
    "StepOutcome", "UserConfig", "ENV_IDS", "make_catalog", "make_config",
]

#: Registered ids and the preset behind each; the cross-session id is several sessions per episode.
_SIMULATED = {
    "recsim_env/InterestDrift-v0": ("default", 500),
    "recsim_env/SlateDrift-v0": ("slate", 500),
    "recsim_env/CrossSessionDrift-v0": ("cross_session", 2000),
}
ENV_IDS = (*_SIMULATED, "recsim_env/TabularDrift-v0")


def _register() -> None:
    for env_id, (preset, max_steps) in _SIMULATED.items():
        if env_id not in registry:
            register(id=env_id, entry_point="recsim_env.envs:RecommendationEnv",
                     vector_entry_point="recsim_env.envs:RecommendationVectorEnv",
                     max_episode_steps=max_steps, kwargs={"preset": preset})
    if "recsim_env/TabularDrift-v0" not in registry:
        # No time limit: ``value_iteration`` solves the untruncated MDP, and every episode ends with
        # probability one anyway (each step leaves with at least ``hazard_base``; see
        # ``TabularMDP.min_exit_probability``), so a limit would only make V* slightly wrong.
        register(id="recsim_env/TabularDrift-v0", entry_point="recsim_env.tabular:TabularDriftEnv")


_register()
