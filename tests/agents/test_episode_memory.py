"""FQE's episode memory and the fit of several targets at once.

The memory's index is checked against a brute-force walk over each episode; the memory is shown to
read what the observation's window has forgotten; several targets fitted together are checked
against one-target fits (exactly for the table, by construction for the network).
"""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import agents
from agents.behaviour import EpsilonGreedy
from agents.episode_memory import TOTAL_SCALE, EpisodeMemory, EpisodeSoFar
from agents.fqe import FQEConfig, fit_fqe, fit_fqe_targets
from recsim_env.logs.propensity import collect_propensity_log
from tests.agents.test_fqe import CASES, large_log, table_log


def episode_log(lengths: list[int], clicks: list[bool], items: list[int]):
    """A table log of episodes of the given lengths, with the given clicks and items per row."""
    user = np.repeat(np.arange(len(lengths)), lengths)
    step = np.concatenate([np.arange(n) for n in lengths])
    r = len(user)
    log = table_log(state=np.zeros(r, np.int64), position=np.zeros(r, np.int64), reward=np.arange(r, dtype=float),
                    terminated=np.zeros(r), truncated=np.isin(np.arange(r), np.cumsum(lengths) - 1), user=user,
                    step=step)
    return dataclasses.replace(log, click=np.asarray(clicks, bool), item=np.asarray(items, np.int64),
                               engagement=np.arange(r, dtype=float) + 0.5)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=5).flatmap(
    lambda lengths: st.tuples(st.just(lengths),
                              st.lists(st.booleans(), min_size=sum(lengths), max_size=sum(lengths)),
                              st.lists(st.integers(0, 9), min_size=sum(lengths), max_size=sum(lengths)))))
def test_each_row_sees_exactly_its_episodes_earlier_clicks(case):
    lengths, clicks, items = case
    log = episode_log(lengths, clicks, items)
    episode = EpisodeSoFar(log)
    rows = torch.arange(len(log))
    ids, offsets = episode.bags(rows)
    bounds = list(offsets.tolist()) + [len(ids)]
    for r in range(len(log)):
        earlier = [j for j in range(r) if log.user[j] == log.user[r]]
        assert ids[bounds[r]:bounds[r + 1]].tolist() == [items[j] for j in earlier if clicks[j]]
        expected = [len(earlier), sum(clicks[j] for j in earlier), sum(log.engagement[j] for j in earlier if clicks[j])]
        np.testing.assert_allclose(episode.totals[r].numpy() * TOTAL_SCALE, expected, rtol=1e-6)
    # Any subset of rows, in any order, gets the same bags.
    order = torch.flip(rows, [0])
    ids_back, offsets_back = episode.bags(order)
    bounds_back = list(offsets_back.tolist()) + [len(ids_back)]
    for k, r in enumerate(order.tolist()):
        assert ids_back[bounds_back[k]:bounds_back[k + 1]].tolist() == ids[bounds[r]:bounds[r + 1]].tolist()


def test_the_memory_reads_what_the_window_forgot():
    """Two users alike at their last step but for an earlier click: the memory tells them apart, and an
    item id beyond its embedding is refused by name."""
    log = episode_log([3, 3], clicks=[1, 0, 0, 0, 0, 0], items=[4, 1, 2, 4, 1, 2])
    log = dataclasses.replace(log, engagement=np.zeros(6))
    episode = EpisodeSoFar(log)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        memory = EpisodeMemory(episode.n_items, dim=4, hidden=8)
    out = memory(episode, torch.tensor([2, 5, 0, 3])).detach()
    assert not torch.allclose(out[0], out[1])  # clicked item 4 at step 0, or not
    assert torch.equal(out[2], out[3])  # nothing before the first step of either
    with pytest.raises(ValueError, match="item id 4 is beyond the 3 items"):
        EpisodeMemory(3, dim=4, hidden=8)(episode, torch.tensor([2]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_targets_fitted_together_as_a_table_equal_each_fitted_alone(case):
    _, target, _ = CASES[case]
    log = large_log(case)
    pi = target[log.obs[:, 0]]
    uniform = np.full_like(pi, 1.0 / pi.shape[1])
    together = fit_fqe_targets(log, {"target": pi, "uniform": uniform})
    for name, probabilities in (("target", pi), ("uniform", uniform)):
        alone = fit_fqe(log, probabilities)
        np.testing.assert_array_equal(together[name].q, alone.q)
        assert together[name].value == alone.value
    with pytest.raises(ValueError, match="no target policies"):
        fit_fqe_targets(log, {})
    with pytest.raises(ValueError, match="uniform has shape"):
        fit_fqe_targets(log, {"target": pi, "uniform": uniform[:, :1]})


def test_network_heads_share_one_fit_and_score_other_logs(one_thread):
    """With the memory: one network for two targets, each head its own values; one target through
    ``fit_fqe_targets`` is ``fit_fqe``; the network scores a log it was not fitted on."""
    env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=50, vectorization_mode="vector_entry_point")
    layout = env.unwrapped.layout
    log = collect_propensity_log(env, EpsilonGreedy(agents.make("myopic", env), 0.3, seed=1), 100, seed=11)
    other = collect_propensity_log(env, EpsilonGreedy(agents.make("myopic", env), 0.3, seed=2), 50, seed=12)
    config = FQEConfig(iterations=3, steps_per_iteration=5, episode_memory=True, seed=3)
    uniform = np.full(log.probabilities.shape, 1.0 / log.probabilities.shape[1])
    both = fit_fqe_targets(log, {"behaviour": log.probabilities, "uniform": uniform}, config, layout=layout)
    assert both["behaviour"].network is both["uniform"].network
    assert (both["behaviour"].head, both["uniform"].head) == (0, 1)
    assert not np.allclose(both["behaviour"].q, both["uniform"].q)
    alone = fit_fqe(log, log.probabilities, config, layout=layout)
    assert alone.value == fit_fqe_targets(log, {"x": log.probabilities}, config, layout=layout)["x"].value
    network = both["uniform"].network
    np.testing.assert_allclose(network.action_values(log)[:, :, 1], both["uniform"].q, rtol=1e-6)
    assert network.action_values(other).shape == other.probabilities.shape + (2,)
    without = fit_fqe(log, log.probabilities, dataclasses.replace(config, episode_memory=False), layout=layout)
    assert without.network.memory is None and alone.network.memory is not None
    assert without.value != alone.value
