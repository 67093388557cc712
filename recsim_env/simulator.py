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
from recsim_env.config import EnvConfig, ResponseConfig
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
    drift, engagement noise, and with ``multi_session`` the wander of a user who is away): three
    generator calls, which for one user cost more than the rest of the draws; a block of
    ``max(1, 1024 // n_users)`` steps shares them. Every number still comes from the caller's
    generator, in order: the block is dropped when another generator is passed (as after
    ``reset(seed=...)``), so the same seed gives the same trajectory. The away normals are extra
    rows of the normals, so single-session trajectories do not depend on them.

    ``rows`` (one per user, values in ``[0, n_users)``) hands the numbers of draw row ``rows[i]`` to
    user ``i``: users with the same row share every random number (common random numbers).
    """

    def __init__(self, n_users: int, n_candidates: int, n_topics: int, n_items: int, response_config: ResponseConfig,
                 multi_session: bool = False, rows: np.ndarray | None = None):
        self.n_users, self.n_candidates, self.n_topics = n_users, n_candidates, n_topics
        self._response_config = response_config
        self._multi_session = multi_session
        self._rows = rows
        self.steps = max(1, DRAW_BLOCK_USER_STEPS // max(n_users, 1))
        self._n_items = np.array(float(n_items))
        self._rng: np.random.Generator | None = None
        self._next = self.steps

    def take(self, rng: np.random.Generator) -> tuple[np.ndarray | None, ...]:
        """One step's draws: float32 uniforms for choosing, leaving and returning ``(B,)`` each, the next
        candidate ids ``(B, C)``, the engagement noise (mean-one lognormal factors) ``(B,)``, float32
        standard normals for the interest drift ``(B, T)`` and, with ``multi_session`` (else None),
        independent ones for the wander of a user who leaves and comes back ``(B, T)``."""
        if rng is not self._rng or self._next == self.steps:
            self._fill(rng)
        i = self._next
        self._next = i + 1
        draws = (self._choice[i], self._leave[i], self._return[i], self._candidates[i], self._engagement[i],
                 self._drift[i], None if self._away is None else self._away[i])
        if self._rows is None:
            return draws
        # Gathered along the users' axis of memory, which stays innermost.
        return tuple(None if d is None else d.T.take(self._rows, axis=-1).T for d in draws)

    def _fill(self, rng: np.random.Generator) -> None:
        # Quantities first, users innermost, like every batch array of the step.
        uniforms = rng.random((self.steps, 3 + self.n_candidates, self.n_users))
        choice_leave_return = uniforms[:, :3].astype(np.float32)  # compared with float32 probabilities
        self._choice, self._leave, self._return = (choice_leave_return[:, j] for j in range(3))
        self._candidates = candidate_ids(uniforms[:, 3:], self._n_items).transpose(0, 2, 1)
        t = self.n_topics
        normals = standard_normals(rng, (self.steps, (2 * t if self._multi_session else t) + 1, self.n_users))
        # Element by element, so a block gives the very numbers of one step at a time.
        self._engagement = response.engagement_noise(normals[:, t], self._response_config)
        self._drift = normals[:, :t].transpose(0, 2, 1)
        self._away = normals[:, t + 1:].transpose(0, 2, 1) if self._multi_session else None
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
def _outcome_tables(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` as a 0-d array (a cheaper ufunc operand than an int), and outcome (``0..K``, ``K`` = no
    click) -> slate position (``-1`` for no click) as a lookup table."""
    table = np.arange(k + 1)
    table[k] = -1
    table.flags.writeable = False
    return np.array(k), table


def candidate_ids(uniforms: np.ndarray, n_items: np.ndarray) -> np.ndarray:
    """Item ids uniform over the catalogue, from float64 uniforms in [0, 1).

    Flooring ``u * n_items`` is exactly uniform up to float64 resolution and never reaches
    ``n_items`` (for ``u < 1`` the product rounds down below it); it is several times cheaper than
    ``rng.integers``. With replacement: a repeat among 10 of 1,000+ items is rare and harmless.
    """
    return (uniforms * n_items).astype(np.int64)


#: Rows of the item table (``Simulator._item_columns``): the item's own numbers, then its topic mixture.
APPEAL, QUALITY, LENGTH, APPEAL_TERM, QUALITY_TERM, FEATURES = range(6)


def _item_columns(catalog: Catalog, config: EnvConfig, paired: bool) -> np.ndarray:
    """Everything the step reads about an item, ``(6 + T, n_items)``, so one gather fetches a whole slate.

    Rows: appeal, quality, length, the item's own terms of the click score and of the watch logit
    (the same products every step), then the features (T). ``paired`` stores the features twice, so
    that for one user and one item they already have the shape of the user's (interest, satiation)
    and ``choice.match`` multiplies equal shapes instead of broadcasting. Stored by column so that
    the gathered ``(B, K, rows)`` array has users innermost, like every batch array here.
    """
    appeal, quality = catalog.appeal.astype(np.float32), catalog.quality.astype(np.float32)
    features = catalog.features.T.astype(np.float32)
    return np.concatenate([
        np.stack([appeal, quality, catalog.length.astype(np.float32),
                  choice.weighted_appeal(appeal, config.choice), response.weighted_quality(quality, config.response)]),
        *([features] * (2 if paired else 1)),
    ], axis=0)


class Simulator:
    """Users, candidates and dynamics for a batch of users; all randomness from the caller's ``rng``."""

    def __init__(self, config: EnvConfig, n_users: int, catalog: Catalog | None = None):
        self.config = config
        self.catalog = make_catalog(config.catalog) if catalog is None else catalog
        #: Item tables by ``paired`` (see ``_item_columns``), read-only and shared with spawned simulators.
        self._item_tables: dict[bool, np.ndarray] = {}
        self._size(n_users, None)

    def _size(self, n_users: int, common: np.ndarray | None) -> None:
        """Everything that depends on the number of users: state, candidates, index arrays, draws."""
        config, cat = self.config, self.catalog
        self.n_users = n_users
        self.state = UserState.empty(n_users, cat.n_topics)
        self.candidates = np.zeros((n_users, config.n_candidates), np.int64)
        #: The item each user responded to in the last step: the clicked one, or the top of the slate.
        self.shown = np.zeros(n_users, np.int64)
        self._paired = n_users == 1 and config.slate_size == 1
        table = self._item_tables.get(self._paired)
        if table is None:
            table = self._item_tables[self._paired] = _item_columns(cat, config, self._paired)
            table.flags.writeable = False
        self._item_columns = table
        self._rows = np.arange(n_users)
        self._row_column = self._rows[:, None]
        self._n_items = np.array(float(cat.n_items))
        self._n_topics = cat.n_topics
        n_draws = n_users if common is None or not n_users else int(common.max()) + 1
        self._draws = StepDraws(n_draws, config.n_candidates, cat.n_topics, cat.n_items, config.response,
                                config.session.multi_session, common)

    def spawn(self, state: UserState, candidates: np.ndarray, common: np.ndarray | None = None) -> Simulator:
        """A simulator of copies of ``state``'s users facing ``candidates`` ``(B, C)``: for planning.

        It shares this simulator's config and catalogue (nothing is rebuilt) and copies the state and
        candidates, so stepping it never touches the originals. Stepped with the same positions and an
        identically seeded generator as a simulator in the same state, it gives the same outcome bit
        for bit. ``common`` ``(B,)``, integers from 0: users with equal values draw the same random
        numbers at every step (common random numbers, to compare actions on the same futures); the
        draws are then made for ``common.max() + 1`` users.
        """
        n = len(state)
        candidates = np.asarray(candidates)
        if candidates.shape != (n, self.config.n_candidates) or candidates.dtype.kind not in "iu":
            raise ValueError(f"candidates must be integer item ids of shape ({n}, {self.config.n_candidates}), "
                             f"got {candidates.dtype} {candidates.shape}")
        if n and (candidates.min() < 0 or candidates.max() >= self.catalog.n_items):
            raise ValueError(f"candidates must be item ids in [0, {self.catalog.n_items})")
        if common is not None:
            common = np.asarray(common)
            if common.shape != (n,) or common.dtype.kind not in "iu" or (n and common.min() < 0):
                raise ValueError(f"common must be {n} integers >= 0, got {common.dtype} {common.shape}")
            common = common.astype(np.intp, copy=False)
        sim = object.__new__(Simulator)
        sim.config, sim.catalog, sim._item_tables = self.config, self.catalog, self._item_tables
        sim._size(n, common)
        sim.state = state.take(np.arange(n))
        sim.candidates = np.array(candidates.T, np.int64).T  # a copy with users innermost, like the draws
        return sim

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """Draw new users (all, or the rows in ``mask``) and their first candidates."""
        self.state.sample(self.config.user, rng, mask)
        if mask is None:
            self.candidates = candidate_ids(rng.random((self.config.n_candidates, self.n_users)), self._n_items).T
        else:
            uniforms = rng.random((np.count_nonzero(mask), self.config.n_candidates))
            self.candidates[mask] = candidate_ids(uniforms, self._n_items)

    def _gather(self, items: np.ndarray) -> np.ndarray:
        """Item ids ``(B, K)`` -> their rows of the item table ``(B, K, rows)`` (see ``_item_columns``)."""
        return self._item_columns.take(items.T, axis=1).T

    def _match(self, items: np.ndarray, topics: np.ndarray) -> np.ndarray:
        """Affinity and boredom ``(B, K, 2)`` of the gathered ``items`` for users' ``topics (B, 2, T)``."""
        t = self._n_topics
        if self._paired:
            b, k, _ = items.shape
            return choice.match(items[..., FEATURES:FEATURES + 2 * t].reshape(b, k, 2, t), topics)
        return choice.match(items[..., FEATURES:FEATURES + t], topics)

    def _pick(self, values: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """``values (B, C)`` at each user's ``positions (B, K)``."""
        if values.shape[0] == 1:
            return values.take(positions)  # one user: the positions index its only row
        return values[self._row_column, positions]

    def _at(self, values: np.ndarray, position: np.ndarray) -> np.ndarray:
        """``values (B, K, ...)`` at each user's slate ``position (B,)``, keeping users innermost."""
        if values.shape[1] == 1:
            return values[:, 0]  # one position: nothing to pick
        return values.T[..., position, self._rows].T

    def _respond(self, click: np.ndarray, position: np.ndarray, items: np.ndarray, match: np.ndarray,
                 noise: np.ndarray) -> tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """How many users clicked, and the topics ``(B, T)``, quality, engagement and satisfaction of
        what each user consumed; zeros for a user who clicked nothing. ``noise``: lognormal factors."""
        n, t = click.shape[0], self._n_topics
        clicks = np.count_nonzero(click)
        if not clicks:  # nobody clicked (about half the steps of a single user)
            return 0, (np.zeros((t, n), np.float32).T, np.zeros(n, np.float32), np.zeros(n, np.float32),
                       np.zeros(n, np.float32))
        consumed = self._at(items, position)  # the item's row
        clicked = None if clicks == n else click.astype(np.float32)
        if clicked is not None:  # zeros without a click (with everyone clicking, a product by one)
            consumed = consumed * clicked[:, None]
        watch = response.watch_of_match(consumed[:, QUALITY_TERM], self._at(match, position), self.config.response)
        engagement = consumed[:, LENGTH] * watch * noise
        satisfaction = response.satisfaction_from_watch(watch)
        if clicked is not None:
            satisfaction *= clicked
        return clicks, (consumed[:, FEATURES:FEATURES + t], consumed[:, QUALITY], engagement, satisfaction)

    def step(self, positions: np.ndarray, rng: np.random.Generator) -> StepOutcome:
        """Show each user the candidates at ``positions`` ``(B, K)``; the user responds; state moves."""
        cfg, st, k = self.config, self.state, positions.shape[1]
        slate = self._pick(self.candidates, positions)
        items = self._gather(slate)  # (B, K, rows): see ``_item_columns``
        match = self._match(items, st.topics)  # (B, K, 2): affinity, boredom
        probs = choice.slate_probabilities(match, items[..., APPEAL_TERM], cfg.choice,
                                           choice.duplicate_mask(slate) if k > 1 else None)
        choice_u, leave_u, return_u, next_candidates, engagement_noise, interest_noise, away_noise = \
            self._draws.take(rng)
        outcome = choice.sample_outcome(probs, choice_u)
        n_shown, position_of = _outcome_tables(k)
        click = outcome < n_shown
        # The clicked position, or the top of the slate without a click (a slate of one has only the top).
        position = outcome * click if k > 1 else outcome
        shown = self._at(slate, position)
        clicks, (consumed, quality, engagement, satisfaction) = self._respond(click, position, items, match,
                                                                             engagement_noise)
        left = dynamics.advance(st, cfg.user, click, consumed, quality, engagement, satisfaction, interest_noise,
                                leave_u, n_clicked=clicks)
        terminated = left
        if cfg.session.multi_session and left.any():
            returned, _ = dynamics.start_next_session(st, cfg.user, cfg.session, left, return_u, away_noise)
            terminated = left & ~returned
        self.candidates = next_candidates
        self.shown = shown
        out = StepOutcome(slate=slate, probabilities=probs, position=position_of.take(outcome),
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
        rows = self._gather(items)
        topics = np.stack((interest, satiation), axis=1).astype(np.float32, copy=False)
        match = choice.match(rows[..., FEATURES:FEATURES + self._n_topics], topics)
        affinity, boredom = match[..., 0], match[..., 1]
        scores = choice.click_scores(affinity, boredom, rows[..., APPEAL], self.config.choice)
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
