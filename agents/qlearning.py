"""Tabular Q-learning, on the finite-MDP preset or on any env through a documented state abstraction.

The update is the textbook one, ``Q(s, a) += lr * (r + gamma * max_a' Q(s', a') - Q(s, a))``, with an
epsilon-greedy behaviour policy whose epsilon decays linearly and a count-based learning rate
``lr = 1 / n(s, a) ** lr_exponent`` (``0.5 < lr_exponent <= 1`` gives convergence to ``Q*``).
Training runs on a vector env, many episodes at once, for a budget of episodes or of user-steps;
the transition into a NEXT_STEP reset is skipped.

Ties in the greedy argmax go to a tied action drawn pseudo-randomly from the observation, not to
the lowest index: an untrained (all-zero) table is then the uniform mixture of its abstract actions,
so "trained against untrained" measures what training did and not which action came first. The
draw is a fixed function of the observation (a seeded random projection), so ``act``, ``scores``
and ``catalogue_scores`` agree on a step and an evaluation is reproducible.
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
from recsim_env.logs.steps import LoggedSteps
from recsim_env.observation import SESSION_STEP_SCALE, ObservationLayout

#: Streams spawned from ``QLearningConfig.seed`` (the env is reset with the seed itself).
EXPLORATION_STREAM, TIE_BREAK_STREAM = 0, 1


def seed_stream(seed: int, stream: int) -> np.random.Generator:
    """A generator of one named stream of ``seed``, independent of ``default_rng(seed)`` (the env's)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


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


class ItemScoringAbstraction(StateAbstraction):
    """Abstract actions that are linear scorers of item features, for the simulated envs.

    Each abstract action gives every user a weight per observable item column (topic mixture,
    appeal, quality score, length); ``actions`` shows the candidate whose features score highest.
    The same weights score any item, so the greedy action also ranks the whole catalogue
    (:meth:`item_scores`), consistently with the candidate it would pick.
    """

    def __init__(self, layout: ObservationLayout):
        self.layout = layout
        self.n_topics = layout.n_topics

    def item_weights(self, obs: np.ndarray, abstract: np.ndarray) -> np.ndarray:
        """``(B, item_dim)`` weights of the item columns under each user's abstract action."""
        raise NotImplementedError

    def candidate_scores(self, obs: np.ndarray, abstract: np.ndarray) -> np.ndarray:
        """Scores ``(B, N)`` of the step's candidates under the abstract actions ``(B,)``."""
        obs = np.atleast_2d(obs)
        candidates = self.layout.split(obs)["candidates"]
        return np.einsum("bnd,bd->bn", candidates, self.item_weights(obs, abstract))

    def item_scores(self, obs: np.ndarray, abstract: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores ``(B, M)`` of arbitrary item rows ``(M, item_dim)``, as if each were a candidate."""
        if items.ndim != 2 or items.shape[1] != self.layout.item_dim:
            raise ValueError(f"items must have shape (M, {self.layout.item_dim}), got {items.shape}")
        return self.item_weights(np.atleast_2d(obs), abstract) @ items.T.astype(np.float64)

    def actions(self, obs: np.ndarray, abstract: np.ndarray) -> np.ndarray:
        return np.argmax(self.candidate_scores(obs, abstract), axis=1)

    def _columns(self, topics: np.ndarray, appeal: float | np.ndarray = 0.0, quality: float | np.ndarray = 0.0,
                 length: float | np.ndarray = 0.0) -> np.ndarray:
        """Item-column weights ``(B, item_dim)`` from topic weights ``(B, T)`` and the other three."""
        b = topics.shape[0]
        rest = np.stack(np.broadcast_arrays(np.asarray(appeal, np.float64), np.asarray(quality, np.float64),
                                            np.asarray(length, np.float64)), axis=-1)
        return np.concatenate([topics, np.broadcast_to(rest, (b, 3))], axis=1)


class TopicAbstraction(ItemScoringAbstraction):
    """A topic per abstract action, read from what a recommender observes.

    State: the dominant topic of the recent clicks (or "no clicks yet") crossed with a boredom
    bucket, the share of the last ``window`` steps that clicked that topic (``buckets`` equal bins).
    Action: a topic; the env action is the candidate that best combines that topic's weight with
    ``quality_weight`` times the observable quality score. Most of its return comes from that
    hand-made mapping (any topic plus quality is a decent item), so training barely matters here;
    :class:`StrategyAbstraction` is the default for that reason.
    """

    def __init__(self, layout: ObservationLayout, window: int = 5, buckets: int = 3, quality_weight: float = 0.5):
        super().__init__(layout)
        self.window, self.buckets = min(window, layout.history_length), buckets
        self.quality_weight = quality_weight
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

    def item_weights(self, obs: np.ndarray, abstract: np.ndarray) -> np.ndarray:
        return self._columns(np.eye(self.n_topics)[abstract], quality=self.quality_weight)


class StrategyAbstraction(ItemScoringAbstraction):
    """Abstract actions that are recommendation strategies, each trading off something else.

    Actions (:attr:`STRATEGIES`): the candidate with the best quality score; the most appealing one
    (what wins the click now, clickbait included); more of the topics the user recently engaged with
    (engagement-weighted, plus ``quality_weight`` x quality); the topics the user consumed least
    recently (a recency-decayed count of clicked topics, negated, plus quality); quality plus
    ``length_weight`` x length (longer views earn more but spend more of the user's time).

    State, read from the history and context only: boredom (the share of the last ``window`` steps
    that clicked the dominant recent topic, ``buckets`` bins), the number of clicks in those steps
    (``buckets`` bins) and the session step (before ``step_edges[0]``, before ``step_edges[1]``, after).
    Which strategy pays depends on that state, and none is right everywhere, so the table has
    something to learn; an all-zero table is the uniform mixture of the strategies.
    """

    STRATEGIES = ("quality", "appeal", "stay", "switch", "long")

    def __init__(self, layout: ObservationLayout, window: int = 5, buckets: int = 3, recency_decay: float = 0.8,
                 quality_weight: float = 0.5, length_weight: float = 1.0, step_edges: tuple[int, int] = (10, 30)):
        super().__init__(layout)
        if not 0.0 < recency_decay <= 1.0:
            raise ValueError(f"recency_decay={recency_decay} is out of range: allowed (0, 1]")
        if buckets < 1 or window < 1:
            raise ValueError(f"window={window} and buckets={buckets} must be >= 1")
        self.window, self.buckets = min(window, layout.history_length), buckets
        self.recency_decay, self.quality_weight, self.length_weight = recency_decay, quality_weight, length_weight
        self.step_edges = np.asarray(step_edges, np.float64) / SESSION_STEP_SCALE
        self.n_states = buckets * buckets * (len(step_edges) + 1)
        self.n_actions = len(self.STRATEGIES)

    def states(self, obs: np.ndarray) -> np.ndarray:
        parts = self.layout.split(np.atleast_2d(obs))
        history = parts["history"][:, -self.window:]
        topics, clicked = history[..., : self.n_topics], history[..., -2] > 0.5
        weight = (topics * clicked[..., None]).sum(axis=1)
        dominant = weight.argmax(axis=1)
        on_topic = clicked & (topics.argmax(axis=2) == dominant[:, None])
        bored = np.minimum((on_topic.mean(axis=1) * self.buckets).astype(np.int64), self.buckets - 1)
        clicks = np.minimum((clicked.mean(axis=1) * self.buckets).astype(np.int64), self.buckets - 1)
        step = np.searchsorted(self.step_edges, parts["context"][:, 0] + 1e-9, side="right")
        return (step * self.buckets + clicks) * self.buckets + bored

    def _recent(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per topic ``(B, T)``: engagement with it over the history, and its recency-decayed click count."""
        history = self.layout.split(obs)["history"]
        topics, clicked, engagement = history[..., : self.n_topics], history[..., -2], history[..., -1]
        age = np.arange(history.shape[1])[::-1]
        engaged = np.einsum("bht,bh->bt", topics, clicked * engagement, dtype=np.float64)
        recency = np.einsum("bht,bh,h->bt", topics, clicked, self.recency_decay ** age, dtype=np.float64)
        return engaged / np.maximum(engaged.max(axis=1, keepdims=True), 1e-9), \
            recency / np.maximum(recency.max(axis=1, keepdims=True), 1e-9)

    def item_weights(self, obs: np.ndarray, abstract: np.ndarray) -> np.ndarray:
        engaged, recency = self._recent(np.atleast_2d(obs))
        b, t = engaged.shape
        none = np.zeros((b, t))
        per_action = np.stack([
            self._columns(none, quality=1.0),
            self._columns(none, appeal=1.0),
            self._columns(engaged, quality=self.quality_weight),
            self._columns(-recency, quality=self.quality_weight),
            self._columns(none, quality=1.0, length=self.length_weight),
        ], axis=1)
        return per_action[np.arange(b), abstract]


@dataclass(frozen=True)
class QLearningConfig(Validated):
    """Training budget and schedules: exactly one of ``episodes`` and ``total_steps`` is the budget."""

    episodes: int = bounded(0, ge=0, le=100_000_000, doc="episodes to train for (0: total_steps is the budget)")
    total_steps: int = bounded(0, ge=0, le=10**11,
                               doc="user-steps to train for, each user of the vector env counts (0: episodes is)")
    discount: float = bounded(1.0, ge=0.0, le=1.0, doc="gamma; 1 is fine for episodes that surely end")
    epsilon_start: float = bounded(1.0, ge=0.0, le=1.0, doc="exploration at the start")
    epsilon_end: float = bounded(0.05, ge=0.0, le=1.0, doc="exploration after the decay")
    epsilon_fraction: float = bounded(0.5, ge=0.0, le=1.0, doc="share of the budget over which epsilon decays")
    lr_exponent: float = bounded(0.6, gt=0.5, le=1.0, doc="learning rate 1 / visits ** lr_exponent")
    seed: int = bounded(0, ge=0, le=2**32 - 1,
                        doc="seed of the env resets; exploration and tie-breaking use streams spawned from it")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.episodes > 0) == (self.total_steps > 0):
            raise ValueError(f"QLearningConfig needs exactly one budget, got episodes={self.episodes} and "
                             f"total_steps={self.total_steps}: set one to an integer in its range "
                             f"(episodes [1, 100000000], total_steps [1, 100000000000]) and leave the other 0")

    @property
    def budget(self) -> int:
        """The budget in its own unit (episodes or user-steps)."""
        return self.episodes or self.total_steps


@dataclass
class TrainingLog:
    """Returns of the training episodes, in the order they ended and in the order they began (without
    those cut short by the end of training, see :mod:`agents.episodes`), and periodic evaluations."""

    episode_returns: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    curve_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    steps: int = 0


class TabularQLearning(Recommender):
    """Tabular Q-learning; ``act`` is greedy in the learned table (ties drawn, see the module docstring)."""

    name = "qlearning"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, abstraction: StateAbstraction | None = None,
                 **config: Any):
        super().__init__(env)
        self.config = QLearningConfig(**config)
        if abstraction is None:
            layout = getattr(env.unwrapped, "layout", None)
            abstraction = StrategyAbstraction(layout) if isinstance(layout, ObservationLayout) else \
                IdentityAbstraction(self.observation_space, self.action_space)
        self.abstraction = abstraction
        self.q = np.zeros((abstraction.n_states, abstraction.n_actions))
        self.visits = np.zeros_like(self.q)
        # A random projection of the observation and an offset: the tie-break draws (see ``tie_uniforms``).
        tie = seed_stream(self.config.seed, TIE_BREAK_STREAM)
        width = int(np.prod(self.observation_space.shape or (1,)))
        self._tie_projection = tie.standard_normal(width) * 1e4
        self._tie_offset = tie.random()

    def exploration_rng(self) -> np.random.Generator:
        """The generator of a training run's exploration (a fresh one: each run draws the same)."""
        return seed_stream(self.config.seed, EXPLORATION_STREAM)

    def tie_uniforms(self, keys: np.ndarray) -> np.ndarray:
        """``(B,)`` numbers in [0, 1), a fixed pseudo-random function of each row of ``keys``: a batch of
        observations, or of state indices (then the projection's first weight alone is used)."""
        flat = np.asarray(keys, np.float64).reshape(len(keys), -1)
        x = flat @ self._tie_projection[: flat.shape[1]] + self._tie_offset
        return x - np.floor(x)

    def greedy(self, states: np.ndarray, obs: np.ndarray | None = None) -> np.ndarray:
        """Greedy abstract actions; among tied actions, the one ``tie_uniforms`` of ``obs`` (default:
        the states) picks, so that each of them is equally likely over observations."""
        q = self.q[states]
        tied = q == q.max(axis=1, keepdims=True)
        count = tied.sum(axis=1)
        pick = np.minimum((self.tie_uniforms(states if obs is None else obs) * count).astype(np.int64), count - 1)
        return (np.cumsum(tied, axis=1) > pick[:, None]).argmax(axis=1)

    def act(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        return self.abstraction.actions(obs, self.greedy(self.abstraction.states(obs), obs))

    def _item_scoring(self) -> ItemScoringAbstraction:
        if not isinstance(self.abstraction, ItemScoringAbstraction):
            raise NotImplementedError(f"{self.name} ranks items only through an item-scoring abstraction, "
                                      f"not {type(self.abstraction).__name__}")
        return self.abstraction

    def scores(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        """The order ``act`` picks from: the greedy abstract action's score of each candidate."""
        ab = self._item_scoring()
        return ab.candidate_scores(obs, self.greedy(ab.states(obs), obs))

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """Every catalogue item scored as a candidate at each logged step, by the greedy abstract action
        there: among a step's candidates the best-scored one is the item ``act`` shows."""
        ab = self._item_scoring()
        return ab.item_scores(steps.obs, self.greedy(ab.states(steps.obs), steps.obs), steps.item_features)

    def train(self, env: gym.vector.VectorEnv, evaluate: Callable[[TabularQLearning], float] | None = None,
              eval_every: int = 1000, progress: bool | None = None) -> TrainingLog:
        """Run ``config.episodes`` episodes or ``config.total_steps`` user-steps on the vector env;
        optionally evaluate every ``eval_every`` episodes."""
        cfg, ab = self.config, self.abstraction
        rng = self.exploration_rng()
        epsilon = LinearSchedule(cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_fraction)
        log = TrainingLog()
        obs, _ = env.reset(seed=cfg.seed)
        n = env.num_envs
        states = ab.states(obs)
        returns = np.zeros(n)
        skip = np.zeros(n, bool)  # NEXT_STEP autoreset: this step resets, it is not a transition
        episodes, steps = EpisodeLog(n), 0
        by_steps = cfg.total_steps > 0
        bar = tqdm(total=cfg.budget, desc=self.name, disable=not progress_enabled(progress),
                   unit="step" if by_steps else "ep", leave=False)
        done_episodes, next_eval = 0, 0
        while (steps if by_steps else done_episodes) < cfg.budget:
            if evaluate is not None and done_episodes >= next_eval:
                log.evaluations.append((done_episodes, float(evaluate(self))))
                next_eval += eval_every
            explore = rng.random(n) < epsilon((steps if by_steps else done_episodes) / cfg.budget)
            abstract = np.where(explore, rng.integers(0, ab.n_actions, n), self.greedy(states, obs))
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
            bar.update(n if by_steps else int(done.sum()))
            skip = done
            states = next_states
        bar.close()
        episodes.restart(steps)
        log.curve_returns = episodes.returns_in_start_order()
        log.steps = steps
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
