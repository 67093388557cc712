"""Roll a recommender out on a batch of users, one episode each, with the native vector env."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from agents.base import Recommender


@dataclass(frozen=True)
class EpisodeStats:
    """Per-user results of one episode each (users first)."""

    returns: np.ndarray
    lengths: np.ndarray
    clicks: np.ndarray
    sessions: np.ndarray


def evaluate(agent: Recommender, env: gym.vector.VectorEnv, seed: int, max_steps: int = 100_000) -> EpisodeStats:
    """Run every user of ``env`` through exactly one episode; later episodes are ignored.

    The same ``seed`` gives the same users to every agent, so agents are compared on equal terms.
    """
    obs, info = env.reset(seed=seed)
    n = env.num_envs
    returns, lengths, clicks = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
    sessions = np.zeros(n, np.int64)
    live = np.ones(n, bool)
    for _ in range(max_steps):
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        returns += np.where(live, reward, 0.0)
        lengths += live
        clicks += live & np.asarray(info["click"], bool)
        sessions = np.where(live, info["user_state"]["session"] + 1, sessions)
        live &= ~(terminated | truncated)
        if not live.any():
            return EpisodeStats(returns, lengths, clicks, sessions)
    raise RuntimeError(f"{n - live.sum()} of {n} users finished within max_steps={max_steps}; raise max_steps")
