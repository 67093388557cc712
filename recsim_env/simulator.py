"""The batched step that wires catalogue, users, choice, response and dynamics together.

There is exactly one copy of the dynamics: the single env is this simulator with one user, the
vector env is this simulator with many.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from recsim_env import choice, dynamics, response
from recsim_env.catalog import Catalog, make_catalog
from recsim_env.config import EnvConfig
from recsim_env.users import UserState


#: Position and item of a user who clicked nothing.
_NONE = np.array(-1, np.int64)
_TWO_PI = np.float32(2.0 * np.pi)
#: Random numbers are drawn for about this many user-steps at a time (many steps of a small batch).
DRAW_BLOCK_USER_STEPS = 1024


@dataclass
class StepOutcome:
    """What happened to each user in one step (users first)."""

    slate: np.ndarray          # (B, K) item ids shown
    probabilities: np.ndarray  # (B, K + 1) outcome probabilities, last column = no click
    position: np.ndarray       # (B,) chosen slate position, -1 for no click
    item: np.ndarray           # (B,) clicked item id, -1 for no click
    click: np.ndarray          # (B,) bool
    engagement: np.ndarray     # (B,) time spent
    satisfaction: np.ndarray   # (B,) in (-1, 1), 0 without a click
    quality: np.ndarray        # (B,) true quality of the clicked item, 0 without a click
    session_ended: np.ndarray  # (B,) bool, the user left the session this step
    terminated: np.ndarray     # (B,) bool, the user is gone for good
    reward: np.ndarray         # (B,) float32


class StepDraws:
    """The random numbers of the coming steps, drawn a block of steps at a time.

    A step needs uniforms (choice, leaving, returning), the next candidates and normals (interest
    drift, engagement noise): three generator calls, which for one user cost more than the rest
    of the draws; a block of ``max(1, 1024 // n_users)`` steps shares them. Every number still comes
    from the caller's generator, in order: the block is dropped when another generator is passed
    (as after ``reset(seed=...)``), so the same seed gives the same trajectory.
    """

    def __init__(self, n_users: int, n_candidates: int, n_topics: int, n_items: int):
        self.n_users, self.n_candidates, self.n_topics = n_users, n_candidates, n_topics
        self.steps = max(1, DRAW_BLOCK_USER_STEPS // max(n_users, 1))
        self._n_items = np.array(float(n_items))
        self._rng: np.random.Generator | None = None
        self._next = self.steps

    def take(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step's ``(3, B)`` float32 uniforms, ``(B, C)`` candidate ids and ``(T + 1, B)`` float32 normals."""
        if rng is not self._rng or self._next == self.steps:
            self._fill(rng)
        i = self._next
        self._next = i + 1
        return self._uniforms[i], self._candidates[i].T, self._normals[i]

    def _fill(self, rng: np.random.Generator) -> None:
        # Quantities first, users innermost, like every batch array of the step.
        uniforms = rng.random((self.steps, 3 + self.n_candidates, self.n_users))
        self._uniforms = uniforms[:, :3].astype(np.float32)  # compared with float32 probabilities
        self._candidates = candidate_ids(uniforms[:, 3:], self._n_items)
        self._normals = standard_normals(rng, (self.steps, self.n_topics + 1, self.n_users))
        self._rng, self._next = rng, 0


def standard_normals(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Float32 standard normals by Box-Muller.

    With numpy's vectorised log, sqrt, cos and sin this costs about half of ``rng.standard_normal``
    for a large batch. The radius comes from float64 uniforms, so the tails are exact out to 8.5
    standard deviations (what lies beyond has probability 1e-17).
    """
    n = int(np.prod(shape))
    half = (n + 1) // 2
    radius = np.sqrt(np.log1p(-rng.random(half)) * -2.0).astype(np.float32)
    angle = rng.random(half, dtype=np.float32) * _TWO_PI
    out = np.empty(2 * half, np.float32)
    np.multiply(radius, np.cos(angle), out=out[:half])
    np.multiply(radius, np.sin(angle), out=out[half:])
    return out[:n].reshape(shape)


@lru_cache(maxsize=16)
def _position_of_outcome(k: int) -> np.ndarray:
    """Outcome (``0..K``, ``K`` = no click) -> slate position (``-1`` for no click), as a lookup table."""
    table = np.arange(k + 1)
    table[k] = -1
    table.flags.writeable = False
    return table


def candidate_ids(uniforms: np.ndarray, n_items: np.ndarray) -> np.ndarray:
    """Item ids uniform over the catalogue, from float64 uniforms in [0, 1).

    Flooring ``u * n_items`` is exactly uniform up to float64 resolution and never reaches
    ``n_items`` (for ``u < 1`` the product rounds down below it); it is several times cheaper than
    ``rng.integers``. With replacement: a repeat among 10 of 1,000+ items is rare and harmless.
    """
    return (uniforms * n_items).astype(np.int64)


class Simulator:
    """Users, candidates and dynamics for a batch of users; all randomness from the caller's ``rng``."""

    def __init__(self, config: EnvConfig, n_users: int, catalog: Catalog | None = None):
        self.config = config
        self.catalog = make_catalog(config.catalog) if catalog is None else catalog
        self.n_users = n_users
        self.state = UserState.empty(n_users, self.catalog.n_topics)
        self.candidates = np.zeros((n_users, config.n_candidates), np.int64)
        #: The item each user responded to in the last step: the clicked one, or the top of the slate.
        self.shown = np.zeros(n_users, np.int64)
        cat = self.catalog
        # Everything the step reads about an item, so one gather fetches a whole slate; stored by column
        # so that the gathered ``(B, K, T + 3)`` array has users innermost, like every batch array here.
        self._item_columns = np.concatenate(
            [cat.features, cat.appeal[:, None], cat.quality[:, None], cat.length[:, None]], axis=1, dtype=np.float32
        ).T.copy()
        self._rows = np.arange(n_users)
        self._row_column = self._rows[:, None]
        self._n_items = np.array(float(cat.n_items))
        self._n_topics = cat.n_topics
        self._draws = StepDraws(n_users, config.n_candidates, cat.n_topics, cat.n_items)

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """Draw new users (all, or the rows in ``mask``) and their first candidates."""
        self.state.sample(self.config.user, rng, mask)
        if mask is None:
            self.candidates = candidate_ids(rng.random((self.config.n_candidates, self.n_users)), self._n_items).T
        else:
            uniforms = rng.random((np.count_nonzero(mask), self.config.n_candidates))
            self.candidates[mask] = candidate_ids(uniforms, self._n_items)

    def _gather(self, items: np.ndarray) -> np.ndarray:
        """Item ids ``(B, K)`` -> their features, appeal, quality and length ``(B, K, T + 3)``."""
        return self._item_columns.take(items.T, axis=1).T

    def _at(self, values: np.ndarray, position: np.ndarray) -> np.ndarray:
        """``values (B, K, ...)`` at each user's slate ``position (B,)``, keeping users innermost."""
        if values.shape[1] == 1:
            return values[:, 0]  # one position: nothing to pick
        return values.T[..., position, self._rows].T

    def _respond(self, click: np.ndarray, position: np.ndarray, items: np.ndarray, match: np.ndarray,
                 noise: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Topics ``(B, T)``, quality, engagement and satisfaction of what each user consumed; zeros
        for a user who clicked nothing."""
        n, t = click.shape[0], self._n_topics
        if not np.count_nonzero(click):  # nobody clicked (about half the steps of a single user)
            return np.zeros((t, n), np.float32).T, np.zeros(n, np.float32), np.zeros(n, np.float32), \
                np.zeros(n, np.float32)
        clicked = click.astype(np.float32)
        affinity, boredom = self._at(match, position).T
        consumed = self._at(items, position) * clicked[:, None]  # the item's row, zeros without a click
        quality = consumed[:, t + 1]
        watch = response.watch_fraction(quality, affinity, boredom, self.config.response)
        engagement = consumed[:, t + 2] * watch * response.engagement_noise(noise, self.config.response)
        satisfaction = response.satisfaction_from_watch(watch) * clicked
        return consumed[:, :t], quality, engagement, satisfaction

    def step(self, positions: np.ndarray, rng: np.random.Generator) -> StepOutcome:
        """Show each user the candidates at ``positions`` ``(B, K)``; the user responds; state moves."""
        cfg, st, t, k = self.config, self.state, self._n_topics, positions.shape[1]
        slate = self.candidates[self._row_column, positions]
        items = self._gather(slate)  # (B, K, T + 3): features, appeal, quality, length
        match = choice.match(items[..., :t], st.topics)  # (B, K, 2): affinity, boredom
        scores = choice.click_scores(match[..., 0], match[..., 1], items[..., t], cfg.choice)
        probs = choice.outcome_probabilities(scores, cfg.choice, choice.duplicate_mask(slate) if k > 1 else None)
        uniforms, next_candidates, normals = self._draws.take(rng)
        choice_u, leave_u, return_u = uniforms
        outcome = choice.sample_outcome(probs, choice_u)
        click = outcome < k
        position = outcome * click  # the clicked position, or the top of the slate without a click
        shown = self._at(slate, position)
        consumed, quality, engagement, satisfaction = self._respond(click, position, items, match, normals[t])
        interest_noise = normals[:t].T
        left = dynamics.advance(st, cfg.user, click, consumed, quality, engagement, satisfaction, interest_noise,
                                leave_u)
        terminated = left
        if cfg.session.multi_session and left.any():
            returned, _ = dynamics.start_next_session(st, cfg.user, cfg.session, left, return_u, interest_noise)
            terminated = left & ~returned
        self.candidates = next_candidates
        self.shown = shown
        out = StepOutcome(slate=slate, probabilities=probs, position=_position_of_outcome(k).take(outcome),
                          item=np.where(click, shown, _NONE), click=click, engagement=engagement,
                          satisfaction=satisfaction, quality=quality, session_ended=left, terminated=terminated,
                          reward=engagement)
        if cfg.reward != "engagement":
            out.reward = self.reward(out)
        return out

    def reward(self, out: StepOutcome) -> np.ndarray:
        """Engagement (default), click, or the user's function of the response dict."""
        kind = self.config.reward
        if kind == "engagement":
            return out.engagement
        if kind == "click":
            return out.click.astype(np.float32)
        value = np.asarray(kind(vars(out)), dtype=np.float32)  # type: ignore[operator]
        if value.shape != (self.n_users,) or not np.all(np.isfinite(value)):
            raise ValueError(f"reward function must return {self.n_users} finite numbers, got shape {value.shape}")
        return value

    def _alone(self, items: np.ndarray, interest: np.ndarray, satiation: np.ndarray):
        """Affinity, boredom and click probability of each item ``(B, M)`` shown on its own.

        The same functions as ``step``, so the numbers agree with it up to float32 rounding.
        """
        t = self._n_topics
        rows = self._gather(items)
        match = choice.match(rows[..., :t], np.stack((interest, satiation), axis=1).astype(np.float32, copy=False))
        affinity, boredom = match[..., 0], match[..., 1]
        scores = choice.click_scores(affinity, boredom, rows[..., t], self.config.choice)
        p_click = choice.outcome_probabilities(scores.reshape(-1, 1), self.config.choice)[:, 0]
        return affinity, boredom, p_click.reshape(items.shape)

    def click_probability(self, items: np.ndarray, interest: np.ndarray, satiation: np.ndarray) -> np.ndarray:
        """Exact probability that each user clicks each item ``(B, M)`` if it were shown alone."""
        return self._alone(items, interest, satiation)[2]

    def expected_reward(self, items: np.ndarray, interest: np.ndarray, satiation: np.ndarray) -> np.ndarray:
        """Exact expected immediate reward of showing each item ``(B, M)`` alone, from the closed forms.

        This is what a myopic oracle maximises. ``interest`` and ``satiation`` are the users' true
        state ``(B, T)``, as ``info["user_state"]`` reports it.
        """
        affinity, boredom, p_click = self._alone(items, interest, satiation)
        kind = self.config.reward
        if kind == "click":
            return p_click
        if kind != "engagement":
            raise ValueError("expected_reward needs reward='engagement' or 'click' (a custom reward has no closed form)")
        watch = response.watch_fraction(self.catalog.quality[items], affinity, boredom, self.config.response)
        return p_click * self.catalog.length[items] * watch
