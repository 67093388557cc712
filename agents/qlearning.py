"""Tabular Q-learning, on the finite-MDP preset or on any env through a documented state abstraction.

The update is the textbook one, ``Q(s, a) += lr * (r + gamma * max_a' Q(s', a') - Q(s, a))``, with an
epsilon-greedy behaviour policy whose epsilon decays linearly and a count-based learning rate
``lr = 1 / n(s, a) ** lr_exponent`` (``0.5 < lr_exponent <= 1`` gives convergence to ``Q*``).
Training runs on a vector env, many episodes at once; the transition into a NEXT_STEP reset is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from agents.base import Recommender
from agents.episodes import EpisodeLog
from agents.schedules import LinearSchedule
from recsim_env.config import Validated, bounded
from recsim_env.io import atomic_write, progress_enabled
from recsim_env.observation import ObservationLayout


class StateAbstraction:
    """Maps observations to a finite state index and abstract actions to env actions."""

    n_states: int
    n_actions: int

    def states(self, obs: np.ndarray) -> np.ndarray:
        """``(B,)`` state indices of a batch of observations."""
        raise NotImplementedError

    def actions(self, obs: np.ndarray, abstract: np.ndarray) -> np.ndarray:
        """Env actions for abstract actions ``(B,)``."""
        raise NotImplementedError


class IdentityAbstraction(StateAbstraction):
    """For envs whose observation is already a ``Discrete`` state and whose actions are ``Discrete``."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        if not isinstance(observation_space, gym.spaces.Discrete) or not isinstance(action_space, gym.spaces.Discrete):
            raise TypeError(f"tabular Q-learning needs Discrete spaces or a state abstraction, got "
                            f"{observation_space} and {action_space}")
        self.n_states, self.n_actions = int(observation_space.n), int(action_space.n)

    def states(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, np.int64).reshape(-1)

    def actions(self, obs: np.ndarray, abstract: np.ndarray) -> np.ndarray:
        return abstract


class TopicAbstraction(StateAbstraction):
    """A small state for the simulated envs, read from what a recommender observes.

    State: the dominant topic of the recent clicks (or "no clicks yet") crossed with a boredom
    bucket, the share of the last ``window`` steps that clicked that topic (``buckets`` equal bins).
    Action: a topic; the env action is the candidate that best combines that topic's weight with
    ``quality_weight`` times the observable quality score. The true user state (interest, satiation, budget) is invisible here,
    which is what makes this a lesson in what tabular RL can and cannot do.
    """

    def __init__(self, layout: ObservationLayout, window: int = 5, buckets: int = 3, quality_weight: float = 0.5):
        self.layout, self.window, self.buckets = layout, min(window, layout.history_length), buckets
        self.quality_weight = quality_weight
        self.n_topics = layout.n_topics
        self.n_states = (self.n_topics + 1) * buckets
        self.n_actions = self.n_topics

    def states(self, obs: np.ndarray) -> np.ndarray:
        parts = self.layout.split(np.atleast_2d(obs))
        history = parts["history"][:, -self.window:]
        topics, clicked = history[..., : self.n_topics], history[..., -2] > 0.5
        weight = (topics * clicked[..., None]).sum(axis=1)
        dominant = np.where(clicked.any(axis=1), weight.argmax(axis=1), self.n_topics)
        on_topic = clicked & (topics.argmax(axis=2) == dominant[:, None])
        bucket = np.minimum((on_topic.mean(axis=1) * self.buckets).astype(np.int64), self.buckets - 1)
        return dominant * self.buckets + bucket

    def candidate_scores(self, obs: np.ndarray, topic_values: np.ndarray) -> np.ndarray:
        """Scores ``(B, N)`` of the candidates given a weight per topic ``(B, T)``: the candidate's
        topic mixture dotted with the weights, plus ``quality_weight`` times its quality score."""
        candidates = self.layout.split(np.atleast_2d(obs))["candidates"]
        quality = candidates[..., self.n_topics + 1]
        return np.einsum("bnt,bt->bn", candidates[..., : self.n_topics], topic_values) + self.quality_weight * quality

    def actions(self, obs: np.ndarray, abstract: np.ndarray) -> np.ndarray:
        return np.argmax(self.candidate_scores(obs, np.eye(self.n_topics)[abstract]), axis=1)


@dataclass(frozen=True)
class QLearningConfig(Validated):
    """Training budget and schedules."""

    episodes: int = bounded(20_000, ge=1, le=100_000_000, doc="episodes to train for")
    discount: float = bounded(1.0, ge=0.0, le=1.0, doc="gamma; 1 is fine for episodes that surely end")
    epsilon_start: float = bounded(1.0, ge=0.0, le=1.0, doc="exploration at the start")
    epsilon_end: float = bounded(0.05, ge=0.0, le=1.0, doc="exploration after the decay")
    epsilon_fraction: float = bounded(0.5, ge=0.0, le=1.0, doc="share of training over which epsilon decays")
    lr_exponent: float = bounded(0.6, gt=0.5, le=1.0, doc="learning rate 1 / visits ** lr_exponent")
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of exploration and of the env resets")


@dataclass
class TrainingLog:
    """Returns of the training episodes, in the order they ended and in the order they began (without
    those cut short by the end of training, see :mod:`agents.episodes`), and periodic evaluations."""

    episode_returns: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    curve_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))


class TabularQLearning(Recommender):
    """Tabular Q-learning; ``act`` is greedy in the learned table."""

    name = "qlearning"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, abstraction: StateAbstraction | None = None,
                 **config: Any):
        super().__init__(env)
        self.config = QLearningConfig(**config)
        if abstraction is None:
            layout = getattr(env.unwrapped, "layout", None)
            abstraction = TopicAbstraction(layout) if isinstance(layout, ObservationLayout) else \
                IdentityAbstraction(self.observation_space, self.action_space)
        self.abstraction = abstraction
        self.q = np.zeros((abstraction.n_states, abstraction.n_actions))
        self.visits = np.zeros_like(self.q)

    def greedy(self, states: np.ndarray) -> np.ndarray:
        """Greedy abstract actions, ties broken by the lowest index."""
        return self.q[states].argmax(axis=1)

    def act(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        return self.abstraction.actions(obs, self.greedy(self.abstraction.states(obs)))

    def scores(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        """The order ``act`` picks from: weight on the greedy topic, then quality (topic abstraction only)."""
        if not isinstance(self.abstraction, TopicAbstraction):
            raise NotImplementedError(f"{self.name} ranks candidates only through a topic abstraction")
        greedy = self.greedy(self.abstraction.states(obs))
        return self.abstraction.candidate_scores(obs, np.eye(self.abstraction.n_topics)[greedy])

    def train(self, env: gym.vector.VectorEnv, evaluate: Callable[[TabularQLearning], float] | None = None,
              eval_every: int = 1000, progress: bool | None = None) -> TrainingLog:
        """Run ``config.episodes`` episodes on the vector env; optionally evaluate every ``eval_every``."""
        cfg, ab = self.config, self.abstraction
        rng = np.random.default_rng(cfg.seed)
        epsilon = LinearSchedule(cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_fraction)
        log = TrainingLog()
        obs, _ = env.reset(seed=cfg.seed)
        n = env.num_envs
        states = ab.states(obs)
        returns = np.zeros(n)
        skip = np.zeros(n, bool)  # NEXT_STEP autoreset: this step resets, it is not a transition
        episodes, steps = EpisodeLog(n), 0
        bar = tqdm(total=cfg.episodes, desc=self.name, disable=not progress_enabled(progress), unit="ep", leave=False)
        done_episodes, next_eval = 0, 0
        while done_episodes < cfg.episodes:
            if evaluate is not None and done_episodes >= next_eval:
                log.evaluations.append((done_episodes, float(evaluate(self))))
                next_eval += eval_every
            explore = rng.random(n) < epsilon(done_episodes / cfg.episodes)
            abstract = np.where(explore, rng.integers(0, ab.n_actions, n), self.greedy(states))
            obs, reward, terminated, truncated, _ = env.step(ab.actions(obs, abstract))
            next_states = ab.states(obs)
            learn = ~skip
            s, a = states[learn], abstract[learn]
            bootstrap = np.where(terminated[learn], 0.0, self.q[next_states[learn]].max(axis=1))
            np.add.at(self.visits, (s, a), 1.0)
            td = reward[learn] + cfg.discount * bootstrap - self.q[s, a]
            np.add.at(self.q, (s, a), td / self.visits[s, a] ** cfg.lr_exponent)
            returns += np.where(learn, reward, 0.0)
            done = (terminated | truncated) & learn
            steps += n
            episodes.record(done, returns, steps)
            log.episode_returns.extend(returns[done].tolist())
            returns[done] = 0.0
            done_episodes += int(done.sum())
            bar.update(int(done.sum()))
            skip = done
            states = next_states
        bar.close()
        episodes.restart(steps)
        log.curve_returns = episodes.returns_in_start_order()
        if evaluate is not None:
            log.evaluations.append((done_episodes, float(evaluate(self))))
        return log

    def save(self, path: str | Path) -> None:
        """Write the table and visit counts atomically (``.npz``)."""
        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.savez(handle, q=self.q, visits=self.visits)

        atomic_write(path, write)

    def load(self, path: str | Path) -> None:
        """Restore a table written by ``save``; a file of another shape is refused."""
        try:
            with np.load(path, allow_pickle=False) as data:
                q, visits = data["q"], data["visits"]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path} is not a Q-learning checkpoint: {err}") from err
        if q.shape != self.q.shape or visits.shape != q.shape:
            raise ValueError(f"{path} holds a table of shape {q.shape}; this agent needs {self.q.shape}")
        self.q, self.visits = q, visits
