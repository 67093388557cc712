"""SlateQ (Ie et al. 2019): slate values from item-wise Q-values and a learned choice model.

A slate of ``K`` out of ``N`` candidates has ``N! / (N - K)!`` orderings, too many actions for DQN.
SlateQ assumes the user consumes at most one item and that reward and next state depend only on
what was consumed; then the value of a slate decomposes as

    Q(s, A) = sum_{i in A} P(i | s, A) Qbar(s, i) + P(none | s, A) Qbar(s, none)

and only the item-wise ``Qbar`` is learned by TD: a transition where the user clicked item ``i``
(or nothing) updates ``Qbar(s, i)`` (or ``Qbar(s, none)``) towards
``r + g * sum_j P(j | s', A') Qbar_target(s', j)``, with ``A'`` the slate the policy would show in
``s'``.

Choices made here, since the agent may not read the true user state:

* **Click model**: learned, in the conditional-logit form the simulator's family uses:
  ``P(k | s, A) = exp(c(s, A_k) + b_k) / (exp(c_0(s)) + sum_j exp(c(s, A_j) + b_j))``, where
  ``c`` is a pair network over (user, candidate), ``c_0`` a per-user no-click logit and ``b`` a
  learned log-attention per slate position (``b_0 = 0``). It is fitted by cross-entropy on the
  observed click position (``info["position"]``) of every stored transition.
* **Slate choice**: greedy, position by position: each position takes the candidate that most raises
  the decomposed slate value given the positions already filled (the paper's greedy method, with
  position effects). Unlike top-K on ``v(s, i) Qbar(s, i)`` it weighs each item against the value of
  no click, and it costs ``O(K N)`` per user.
* Double-Q style: the online networks choose ``A'``, the target Q-network values it.
* **Ranking one item** (``scores``, ``catalogue_scores``): by the value of the slate holding that item
  alone at the top, ``Qbar(s, none) + sigmoid(c(s, i) + b_0 - c_0(s)) (Qbar(s, i) - Qbar(s, none))``,
  which is exactly what the greedy slate maximises when it fills its first position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.dqn import DQNConfig, PairQAgent
from agents.q_networks import PairNetwork
from recsim_env.choice import duplicate_mask
from recsim_env.logs.steps import LoggedSteps
from recsim_env.observation import ObservationLayout


class PositionAttention(nn.Module):
    """Learned log-attention of each slate position; the first is fixed at 0 (the scale is the no-click logit's)."""

    def __init__(self, slate_size: int):
        super().__init__()
        self.rest = nn.Parameter(torch.zeros(slate_size - 1))

    def forward(self) -> torch.Tensor:
        return torch.cat([self.rest.new_zeros(1), self.rest])


class SlateQAgent(PairQAgent):
    """SlateQ with a learned conditional-logit click model; ``act`` returns ``(B, K)`` slates, best first.

    Args:
        env: A single or vector env with a flat laid-out observation and a
            ``MultiDiscrete([N] * K)`` action (a slate of candidate positions).
        layout: The layout, when ``env.unwrapped.layout`` does not hold it.
        config: A :class:`~agents.dqn.DQNConfig`; keyword overrides replace its fields.
    """

    name = "slateq"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, layout: ObservationLayout | None = None,
                 config: DQNConfig | None = None, **overrides: Any):
        super().__init__(env, layout, config, **overrides)
        if self.slate_size > self.layout.n_candidates:
            raise ValueError(f"slate of {self.slate_size} from {self.layout.n_candidates} candidates")

    def _check_action_space(self, space: gym.Space) -> None:
        if not isinstance(space, gym.spaces.MultiDiscrete) or len(space.nvec.shape) != 1 \
                or len(set(space.nvec.tolist())) != 1:
            raise TypeError(f"{self.name} shows a slate: it needs MultiDiscrete([n_candidates] * slate_size), "
                            f"got {space}; use 'dqn' for a Discrete action")
        self.slate_size = int(space.nvec.shape[0])

    def _networks(self) -> dict[str, nn.Module]:
        hidden, encoder = self.config.hidden, self.config.encoder
        return {"q": PairNetwork(self.layout, hidden, encoder, item_outputs=1, state_outputs=1),
                "click": PairNetwork(self.layout, hidden, encoder, item_outputs=1, state_outputs=1),
                "attention": PositionAttention(self.slate_size)}

    # -- the model --------------------------------------------------------------------------------
    def item_values(self, obs: torch.Tensor, target: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``Qbar(s, i)`` for every candidate ``(B, N)`` and ``Qbar(s, none)`` ``(B,)``."""
        items, state = (self.target if target else self.online)["q"](obs)
        return items[..., 0], state[:, 0]

    def click_logits(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Click logits ``c(s, i)`` ``(B, N)`` and the no-click logit ``c_0(s)`` ``(B,)``."""
        items, state = self.online["click"](obs)
        return items[..., 0], state[:, 0]

    def outcome_logits(self, item_logits: torch.Tensor, none_logit: torch.Tensor, slate: torch.Tensor) -> torch.Tensor:
        """``(B, K + 1)`` logits of clicking each slate position, then of no click."""
        shown = item_logits.gather(1, slate) + self.online["attention"]()
        return torch.cat([shown, none_logit[:, None]], dim=1)

    def greedy_slate(self, q_items: torch.Tensor, q_none: torch.Tensor, item_logits: torch.Tensor,
                     none_logit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill positions in order, each with the candidate that most raises the slate value.

        Returns:
            The slate ``(B, K)`` and its decomposed value ``sum_k P(k) Qbar(A_k) + P(none) Qbar(none)`` ``(B,)``.
        """
        attention = self.online["attention"]()
        shift = torch.maximum(item_logits.max(dim=1).values + attention.max(), none_logit)  # keep exp() finite
        weight_none = torch.exp(none_logit - shift)
        numerator, denominator = weight_none * q_none, weight_none
        taken = torch.zeros_like(q_items, dtype=torch.bool)
        slate = []
        for k in range(self.slate_size):
            weight = torch.exp(item_logits + attention[k] - shift[:, None])
            value = (numerator[:, None] + weight * q_items) / (denominator[:, None] + weight)
            best = value.masked_fill(taken, -torch.inf).argmax(dim=1, keepdim=True)
            numerator = numerator + (weight * q_items).gather(1, best)[:, 0]
            denominator = denominator + weight.gather(1, best)[:, 0]
            taken.scatter_(1, best, True)
            slate.append(best)
        return torch.cat(slate, dim=1), numerator / denominator

    def single_item_values(self, q_items: torch.Tensor, q_none: torch.Tensor, item_logits: torch.Tensor,
                           none_logit: torch.Tensor) -> torch.Tensor:
        """``(B, M)`` value of showing each item alone at the top: the greedy slate's first-position criterion."""
        p_click = torch.sigmoid(item_logits + self.online["attention"]()[0] - none_logit[:, None])
        return q_none[:, None] + p_click * (q_items - q_none[:, None])

    # -- acting -----------------------------------------------------------------------------------
    def scores(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        """``(B, N)`` single-item slate value of each candidate; the top one is the slate's first position."""
        with torch.no_grad():
            x = torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32)
            return self.single_item_values(*self.item_values(x), *self.click_logits(x)).numpy()

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """``(S, n_items)`` single-item slate value of every catalogue item (see :meth:`scores`)."""
        obs, items = self.logged_tensors(steps)
        with torch.no_grad():
            q_items, q_none = self.online["q"].score_items(obs, items)
            item_logits, none_logit = self.online["click"].score_items(obs, items)
            return self.single_item_values(q_items[..., 0], q_none[:, 0], item_logits[..., 0], none_logit[:, 0]).numpy()

    def click_probability(self, steps: LoggedSteps) -> np.ndarray:
        """``(S, K)`` learned conditional-logit probability of a click on each position of the logged slate.

        The slate is ``steps.shown`` (item ids, best position first), scored from its catalogue rows.
        A repeated item is shown once, at its first position (as the simulator does), so its later
        positions get probability 0 and take no share of the others'.

        Raises:
            ValueError: the slate is longer than the learned position attention, or names no catalogue item.
        """
        obs, items = self.logged_tensors(steps)
        shown = np.asarray(steps.shown, np.int64)
        k = shown.shape[1]
        if k > self.slate_size:
            raise ValueError(f"steps.shown has slates of {k} items; {self.name} learned {self.slate_size} positions")
        if shown.size and (shown.min() < 0 or shown.max() >= len(items)):
            raise ValueError(f"steps.shown holds item ids outside [0, {len(items)})")
        with torch.no_grad():
            item_logits, none_logit = self.online["click"].score_items(obs, items[torch.as_tensor(shown)])
            shown_logits = item_logits[..., 0] + self.online["attention"]()[:k]
            shown_logits = shown_logits.masked_fill(torch.as_tensor(duplicate_mask(shown)), -torch.inf)
            p = torch.softmax(torch.cat([shown_logits, none_logit], dim=1), dim=1)
        return p[:, :k].numpy()

    def act(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32)
            slate, _ = self.greedy_slate(*self.item_values(x), *self.click_logits(x))
        return slate.numpy()

    def explore(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        greedy = self.act(obs)
        uniform = rng.random(len(greedy))
        random = np.argsort(rng.random((len(greedy), self.layout.n_candidates)), axis=1)[:, :self.slate_size]
        return np.where((uniform < epsilon)[:, None], random, greedy)

    # -- learning ---------------------------------------------------------------------------------
    def td_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``R + discount * V_target(s')``, with ``V`` the decomposed value of the greedy next slate."""
        reward = batch["reward"] * self.config.reward_scale
        discount = batch["discount"]
        if not bool((discount > 0).any()):
            return reward
        with torch.no_grad():
            next_obs = batch["next_obs"]
            logits = self.click_logits(next_obs)
            slate, _ = self.greedy_slate(*self.item_values(next_obs), *logits)
            q_items, q_none = self.item_values(next_obs, target=True)
            p = torch.softmax(self.outcome_logits(*logits, slate), dim=1)
            value = (p[:, :-1] * q_items.gather(1, slate)).sum(dim=1) + p[:, -1] * q_none
        return reward + discount * value

    def learn(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        obs, slate, clicked = batch["obs"], batch["action"], batch["clicked"]
        target = self.td_target(batch)
        q_items, q_none = self.item_values(obs)
        click = clicked >= 0
        item = slate.gather(1, clicked.clamp(min=0)[:, None])[:, 0]  # the consumed candidate (any, if none)
        q = torch.where(click, q_items.gather(1, item[:, None])[:, 0], q_none)
        td_loss = F.smooth_l1_loss(q, target)
        outcome = torch.where(click, clicked, torch.full_like(clicked, self.slate_size))
        click_loss = F.cross_entropy(self.outcome_logits(*self.click_logits(obs), slate), outcome)
        self._step(td_loss + click_loss)
        return {"td_loss": float(td_loss.detach()), "click_loss": float(click_loss.detach()),
                "q_mean": float(q.detach().mean())}


def train(env: gym.vector.VectorEnv, config: DQNConfig | None = None, out_dir: str | Path | None = None,
          progress: bool | None = None, resume: bool = True, **overrides: Any):
    """Train SlateQ on a slate env (e.g. ``recsim_env/SlateDrift-v0``); see :func:`agents.training.run`."""
    from agents.training import run

    return run(SlateQAgent(env, config=config, **overrides), env, out_dir, progress=progress, resume=resume)
