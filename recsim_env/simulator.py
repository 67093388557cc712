"""The batched step that wires catalogue, users, choice, response and dynamics together.

There is exactly one copy of the dynamics: the single env is this simulator with one user, the
vector env is this simulator with many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim_env import choice, dynamics, response
from recsim_env.catalog import Catalog, make_catalog
from recsim_env.config import EnvConfig
from recsim_env.users import UserState


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


class Simulator:
    """Users, candidates and dynamics for a batch of users; all randomness from the caller's ``rng``."""

    def __init__(self, config: EnvConfig, n_users: int, catalog: Catalog | None = None):
        self.config = config
        self.catalog = make_catalog(config.catalog) if catalog is None else catalog
        self.n_users = n_users
        self.state = UserState.empty(n_users, self.catalog.n_topics)
        self.candidates = np.zeros((n_users, config.n_candidates), np.int64)
        self._rows = np.arange(n_users)

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """Draw new users (all, or the rows in ``mask``) and their first candidates."""
        self.state.sample(self.config.user, rng, mask)
        fresh = self._draw_candidates(rng)
        if mask is None:
            self.candidates = fresh
        else:
            self.candidates[mask] = fresh[mask]

    def _draw_candidates(self, rng: np.random.Generator) -> np.ndarray:
        # Uniform with replacement: a repeat among 10 of 1,000+ items is rare and harmless.
        return rng.integers(0, self.catalog.n_items, size=(self.n_users, self.config.n_candidates))

    def step(self, positions: np.ndarray, rng: np.random.Generator) -> StepOutcome:
        """Show each user the candidates at ``positions`` ``(B, K)``; the user responds; state moves."""
        cfg, cat, st, rows = self.config, self.catalog, self.state, self._rows
        slate = self.candidates[rows[:, None], positions]
        k = slate.shape[1]
        affinity, boredom = choice.topic_match(st.interest, st.satiation, cat.features[slate])
        scores = choice.click_scores(affinity, boredom, cat.appeal[slate], cfg.choice)
        probs = choice.outcome_probabilities(scores, cfg.choice, choice.duplicate_mask(slate) if k > 1 else None)
        uniforms = rng.random((self.n_users, 3), dtype=np.float32)
        normals = rng.standard_normal((self.n_users, cat.n_topics + 1), dtype=np.float32)
        outcome = choice.sample_outcome(probs, uniforms[:, 0])
        click = outcome < k
        pos = np.minimum(outcome, k - 1)
        shown = slate[rows, pos]  # the clicked item, or the top of the slate when nothing was clicked
        quality = cat.quality[shown] * click
        watch = response.watch_fraction(quality, affinity[rows, pos], boredom[rows, pos], cfg.response)
        engagement = cat.length[shown] * watch * response.engagement_noise(normals[:, -1], cfg.response) * click
        satisfaction = response.satisfaction_from_watch(watch) * click
        interest_noise = normals[:, :-1]
        left = dynamics.advance(st, cfg.user, click, cat.features[shown] * click[:, None], quality, engagement,
                                satisfaction, interest_noise, uniforms[:, 1])
        terminated = left
        if cfg.session.multi_session and left.any():
            returned, _ = dynamics.start_next_session(st, cfg.user, cfg.session, left, uniforms[:, 2],
                                                      interest_noise)
            terminated = left & ~returned
        self.candidates = self._draw_candidates(rng)
        out = StepOutcome(slate=slate, probabilities=probs, position=np.where(click, outcome, -1),
                          item=np.where(click, shown, -1), click=click, engagement=engagement,
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
        """Affinity, boredom and click probability of each item ``(B, M)`` shown on its own."""
        affinity, boredom = choice.topic_match(interest, satiation, self.catalog.features[items])
        scores = choice.click_scores(affinity, boredom, self.catalog.appeal[items], self.config.choice)
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
