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


@dataclass(frozen=True)
class UserTrace:
    """One user's hidden state and responses over one episode (steps first)."""

    interest: np.ndarray
    satiation: np.ndarray
    budget: np.ndarray
    click: np.ndarray
    reward: np.ndarray
    session: np.ndarray


def trace_user(agent: Recommender, env: gym.vector.VectorEnv, seed: int, max_steps: int = 100_000) -> UserTrace:
    """Follow the first user of ``env`` through one episode, recording the true state before each step."""
    obs, info = env.reset(seed=seed)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("interest", "satiation", "budget", "click", "reward",
                                                         "session")}
    for _ in range(max_steps):
        state = info["user_state"]
        for key in ("interest", "satiation", "budget", "session"):
            rows[key].append(np.asarray(state[key])[0])
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        rows["click"].append(np.asarray(info["click"])[0])
        rows["reward"].append(np.asarray(reward)[0])
        if terminated[0] or truncated[0]:
            return UserTrace(**{k: np.array(v) for k, v in rows.items()})
    raise RuntimeError(f"the user did not finish within max_steps={max_steps}")
