"""Roll a recommender out on a batch of users, one episode each, with the native vector env."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import ACTIVE, Recommender


@dataclass(frozen=True)
class EpisodeStats:
    """Per-user results of one episode each (users first).

    ``hits`` and ``gains`` sum, over a user's steps, the expected HR@1 and NDCG@``k`` of the agent's
    candidate ranking against the candidate the user would choose (see :func:`next_click_accuracy`);
    they are NaN when the agent cannot rank or accuracy was not asked for.
    """

    returns: np.ndarray
    lengths: np.ndarray
    clicks: np.ndarray
    sessions: np.ndarray
    hits: np.ndarray | None = None
    gains: np.ndarray | None = None

    def accuracy(self) -> dict[str, float]:
        """Step-weighted mean HR@1 and NDCG over every step of every user."""
        if self.hits is None or self.gains is None:
            return {"HR@1": float("nan"), "NDCG": float("nan")}
        steps = self.lengths.sum()
        return {"HR@1": float(self.hits.sum() / steps), "NDCG": float(self.gains.sum() / steps)}


def choice_distribution(env: gym.vector.VectorEnv, info: dict[str, Any]) -> np.ndarray:
    """Which candidate each user would click if shown all of them at once, given that they click one.

    ``(B, N)`` probabilities from the simulator's closed form: under the conditional logit the
    choice among items is proportional to each item's click odds on its own.
    """
    sim = env.unwrapped.simulator
    state = info["user_state"]
    p_click = sim.click_probability(np.asarray(info["candidates"]), np.asarray(state["interest"]),
                                    np.asarray(state["satiation"]))
    odds = p_click / np.maximum(1.0 - p_click, 1e-12)
    return odds / odds.sum(axis=1, keepdims=True)


def next_click_accuracy(scores: np.ndarray, choice: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Expected HR@1 and NDCG@``k`` per user of a candidate ranking against a choice distribution.

    With one relevant item per draw the ideal DCG is 1, so NDCG is the expectation of
    ``1 / log2(rank + 2)`` over the chosen candidate's 0-based rank in ``scores`` (0 beyond ``k``).
    Ties are broken by position, as the agents' argmax does.
    """
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(scores.shape[1])[None, :], axis=1)
    gain = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    return np.take_along_axis(choice, order[:, :1], axis=1)[:, 0], (choice * gain).sum(axis=1)


def evaluate(agent: Recommender, env: gym.vector.VectorEnv, seed: int, max_steps: int = 100_000,
             accuracy: bool = False, k: int = 10) -> EpisodeStats:
    """Run every user of ``env`` through exactly one episode; later episodes are ignored.

    The same ``seed`` gives the same users to every agent, so agents are compared on equal terms.
    With ``accuracy``, every step also scores the agent's ranking of the candidates against the
    user's next click (:func:`next_click_accuracy`); agents that cannot rank get NaN.
    """
    obs, info = env.reset(seed=seed)
    n = env.num_envs
    returns, lengths, clicks = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
    sessions = np.zeros(n, np.int64)
    hits, gains = np.zeros(n), np.zeros(n)
    ranks = accuracy
    live = np.ones(n, bool)
    for _ in range(max_steps):
        info[ACTIVE] = live.copy()  # only these users' actions count from here on
        action = agent.act(obs, info)
        if ranks:
            try:
                hit, gain = next_click_accuracy(agent.scores(obs, info), choice_distribution(env, info), k)
            except NotImplementedError:
                ranks = False
                hits[:], gains[:] = np.nan, np.nan
            else:
                hits += np.where(live, hit, 0.0)
                gains += np.where(live, gain, 0.0)
        obs, reward, terminated, truncated, info = env.step(action)
        returns += np.where(live, reward, 0.0)
        lengths += live
        clicks += live & np.asarray(info["click"], bool)
        sessions = np.where(live, info["user_state"]["session"] + 1, sessions)
        live &= ~(terminated | truncated)
        if not live.any():
            if not accuracy:
                return EpisodeStats(returns, lengths, clicks, sessions)
            return EpisodeStats(returns, lengths, clicks, sessions, hits, gains)
    raise RuntimeError(f"{n - live.sum()} of {n} users finished within max_steps={max_steps}; raise max_steps")


@dataclass(frozen=True)
class UserTrace:
    """One user's hidden state and responses over one episode (steps first), and why it ended.

    ``reason`` is ``"budget"`` (the time budget ran out), ``"hazard"`` (the user left on the leaving
    hazard with budget to spare; ``final_boredom`` is their top satiation then) or ``"time limit"``
    (truncated). With several sessions it describes the last one, after which the user did not return.
    """

    interest: np.ndarray
    satiation: np.ndarray
    budget: np.ndarray
    click: np.ndarray
    reward: np.ndarray
    session: np.ndarray
    reason: str = ""
    final_budget: float = float("nan")
    final_boredom: float = float("nan")


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
            final = info["user_state"]  # NEXT_STEP autoreset: the user is reset only at the next step
            budget, boredom = float(np.asarray(final["budget"])[0]), float(np.asarray(final["satiation"])[0].max())
            reason = "budget" if budget <= 0.0 else ("hazard" if terminated[0] else "time limit")
            return UserTrace(**{k: np.array(v) for k, v in rows.items()}, reason=reason, final_budget=budget,
                             final_boredom=boredom)
    raise RuntimeError(f"the user did not finish within max_steps={max_steps}")
