"""Networks that score (user state, candidate item) pairs, one output row per candidate.

A recommender's action is "which of these candidates", and the candidates are drawn anew each
step from a catalogue of any size, so a network with one fixed output per action index would have
to learn that index 3 means a different item every step. Instead a user encoder summarises what the
observation says about the user (the history of shown items and responses, the context, and the
true state when the env exposes it), and a small pair network reads that summary next to each
candidate's feature row. The same weights score every candidate; the number of candidates and of
items in the catalogue do not enter the network.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from recsim_env.observation import ObservationLayout


def observation_layout(env: gym.Env | gym.vector.VectorEnv, layout: ObservationLayout | None = None,
                       ) -> ObservationLayout:
    """The env's flat-observation layout, checked against its observation space.

    Raises:
        TypeError: the env has no layout to decode its observation, or its observation is not a flat ``Box``.
        ValueError: the layout and the observation size disagree.
    """
    space = getattr(env, "single_observation_space", env.observation_space)
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise TypeError(f"the Q-network needs a flat 1-D Box observation, got {space}")
    if layout is None:
        layout = getattr(env.unwrapped, "layout", None)
        if layout is None and hasattr(env, "envs"):  # Gymnasium's sync vector env over single envs
            layout = getattr(env.envs[0].unwrapped, "layout", None)
    if not isinstance(layout, ObservationLayout):
        raise TypeError(f"{type(env.unwrapped).__name__} has no recsim_env ObservationLayout (env.unwrapped.layout); "
                        "pass layout= to say which part of the observation is history and which is candidates")
    if layout.size != space.shape[0]:
        raise ValueError(f"the layout describes observations of size {layout.size}, the env's are {space.shape[0]}")
    return layout


#: User encoders :class:`UserEncoder` can build.
ENCODERS = ("mlp", "gru", "transformer")
#: Self-attention blocks and heads of the ``"transformer"`` encoder (heads: the most of these that divide
#: ``hidden``). One block: a DQN re-encodes every replayed observation three times per gradient step, and
#: ten history rows of item features need little depth.
TRANSFORMER_BLOCKS = 1
TRANSFORMER_HEADS = (4, 2, 1)


class UserEncoder(nn.Module):
    """Flat observations ``(B, D)`` -> user embeddings ``(B, hidden)``.

    ``"mlp"`` (option A) reads the flattened history rows; ``"gru"`` (option B) runs a GRU over the
    history rows, oldest first, and reads its last hidden state; ``"transformer"`` (option C) runs
    pre-norm self-attention blocks (``nn.TransformerEncoderLayer``, no causal mask: the whole history
    is the input, nothing is predicted position by position) over the history rows with learned
    positions, and averages the outputs at the non-empty rows. All three add the context (session
    step, day) and, when observed, the true user state.

    The transformer's summary is the mean over the valid rows rather than the last position: every
    position already attends to every other, recency is in the learned positions, and the mean over no
    rows (a user's first step) is exactly zero instead of the output of a padding row. A history row
    is empty (padding) when its topic mixture is all zero: every catalogue item's mixture sums to 1,
    and the observation writes empty rows as zeros; padded rows are masked out of attention and of
    the mean, so whatever else they hold never reaches the embedding.
    """

    def __init__(self, layout: ObservationLayout, hidden: int, kind: str = "mlp"):
        super().__init__()
        self.layout, self.kind = layout, kind
        extra = (layout.context.stop - layout.context.start) + (layout.user_state.stop - layout.user_state.start)
        if kind == "mlp":
            self.net = nn.Sequential(nn.Linear(layout.history.stop + extra, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU())
        elif kind == "gru":
            self.gru = nn.GRU(layout.history_dim, hidden, batch_first=True)
            self.net = nn.Sequential(nn.Linear(hidden + extra, hidden), nn.ReLU())
        elif kind == "transformer":
            heads = next(h for h in TRANSFORMER_HEADS if hidden % h == 0)
            self.row_in = nn.Linear(layout.history_dim, hidden)
            self.position = nn.Parameter(torch.zeros(layout.history_length, hidden))
            nn.init.normal_(self.position, std=0.02)
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
                for _ in range(TRANSFORMER_BLOCKS))
            self.norm = nn.LayerNorm(hidden)  # pre-norm blocks leave their output unnormalised
            self.net = nn.Sequential(nn.Linear(hidden + extra, hidden), nn.ReLU())
        else:
            raise ValueError(f"encoder={kind!r}: allowed {', '.join(map(repr, ENCODERS))}")

    def history_mask(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, H)`` True at the non-empty history rows (those whose topic mixture is not all zero)."""
        return rows[..., :self.layout.n_topics].abs().sum(dim=-1) > 0.5

    def _attend(self, rows: torch.Tensor) -> torch.Tensor:
        """History rows ``(B, H, history_dim)`` -> mean of the attention outputs at the valid rows ``(B, hidden)``."""
        valid = self.history_mask(rows)
        # A user with no history would have every key masked (NaN attention): let those attend to
        # their (zeroed) rows, then drop every row from the mean, which leaves zeros.
        padding = ~valid & valid.any(dim=1, keepdim=True)
        # An additive mask: the same function as a boolean one, and on CPU twice as fast under pre-norm.
        additive = torch.zeros(padding.shape, dtype=rows.dtype, device=rows.device).masked_fill(padding, float("-inf"))
        x = self.row_in(rows.masked_fill(~valid[..., None], 0.0)) + self.position
        for block in self.blocks:
            x = block(x, src_key_padding_mask=additive)
        x = self.norm(x) * valid[..., None]
        return x.sum(dim=1) / valid.sum(dim=1, keepdim=True).clamp(min=1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lay = self.layout
        extra = obs[:, lay.context.start:lay.user_state.stop]
        if self.kind == "mlp":
            return self.net(torch.cat([obs[:, lay.history], extra], dim=1))
        rows = obs[:, lay.history].reshape(obs.shape[0], lay.history_length, lay.history_dim)
        if self.kind == "transformer":
            return self.net(torch.cat([self._attend(rows), extra], dim=1))
        _, last = self.gru(rows)
        return self.net(torch.cat([last[0], extra], dim=1))


class PairNetwork(nn.Module):
    """Scores every candidate of every user: ``(B, D)`` -> ``(B, N, item_outputs)``, ``(B, state_outputs)``.

    Each candidate's score is an MLP over ``[user embedding, candidate features]``; the first layer
    of that MLP is split into a user part (computed once per user) and an item part (once per
    candidate), which is the same function as concatenating but ``N`` times cheaper on the user side.
    ``state_outputs`` are per-user heads on the embedding alone, for quantities that belong to no
    candidate (SlateQ's value of no click and its no-click logit).

    Args:
        layout: Where history, candidates and context sit in the flat observation.
        hidden: Width of the embedding and of the pair MLP.
        encoder: ``"mlp"``, ``"gru"`` or ``"transformer"`` user encoder.
        item_outputs: Outputs per (user, candidate) pair.
        state_outputs: Outputs per user.
    """

    def __init__(self, layout: ObservationLayout, hidden: int = 128, encoder: str = "mlp",
                 item_outputs: int = 1, state_outputs: int = 0):
        super().__init__()
        self.layout = layout
        self.encoder = UserEncoder(layout, hidden, encoder)
        self.user_in = nn.Linear(hidden, hidden)
        self.item_in = nn.Linear(layout.item_dim, hidden, bias=False)
        self.pair = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, item_outputs))
        self.state_head = nn.Linear(hidden, state_outputs) if state_outputs else None

    def forward(self, obs: torch.Tensor, user_offset: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``user_offset`` ``(B, hidden)``: added to the user side, for what the observation does not hold
        (FQE's :class:`~agents.episode_memory.EpisodeMemory`)."""
        lay = self.layout
        user = self.encoder(obs)
        items = obs[:, lay.candidates].reshape(obs.shape[0], lay.n_candidates, lay.item_dim)
        user_side = self.user_in(user) if user_offset is None else self.user_in(user) + user_offset
        scores = self.pair(user_side[:, None, :] + self.item_in(items))
        return scores, (self.state_head(user) if self.state_head is not None else None)

    def score_items(self, obs: torch.Tensor, items: torch.Tensor, max_elements: int = 2**22,
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of the given items instead of the observation's candidates, for ranking a catalogue.

        The same function as :meth:`forward` with ``items`` in place of the candidate rows:
        ``(B, M, item_outputs)`` and the per-user heads ``(B, state_outputs)``.

        Args:
            obs: Flat observations ``(B, D)``; only their user side (history, context) is read.
            items: Feature rows laid out like a candidate: ``(M, item_dim)`` shared by every user
                (a catalogue, whose item side is computed once), or ``(B, M, item_dim)`` per user.
            max_elements: Bound on the ``users x items x hidden`` activations held at once; users
                are processed in chunks that stay under it.
        """
        user = self.encoder(obs)
        user_part = self.user_in(user)[:, None, :]
        item_part = self.item_in(items)
        shared = items.dim() == 2
        per_user = item_part.shape[-2] * item_part.shape[-1]
        chunk = max(1, max_elements // max(per_user, 1))
        rows = [self.pair(user_part[i:i + chunk] + (item_part if shared else item_part[i:i + chunk]))
                for i in range(0, obs.shape[0], chunk)]
        scores = torch.cat(rows) if rows else user_part.new_zeros((0, items.shape[-2], self.pair[-1].out_features))
        return scores, (self.state_head(user) if self.state_head is not None else None)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target <- tau * source + (1 - tau) * target`` (``tau = 1`` copies)."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.lerp_(s, tau)
