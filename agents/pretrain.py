"""Pre-training a DQN's networks as a choice model on a logged history, then fine-tuning them by RL.

The DQN sees items only through their feature rows (the observation holds no item ids), so the
sequence model worth pre-training is one that reads what the DQN reads: the same
:class:`~agents.q_networks.PairNetwork` (user encoder over the history rows, item tower on feature
rows, pair MLP), trained to predict what each logged user did with what was shown. Per logged step
the model gives a logit to every shown item and one to "no click" (a per-user head), and the loss
is the cross-entropy of the user's actual choice: the clicked position, or no click. With one shown
item this is the logistic loss of the click with a per-user bias; with a slate it is the
conditional logit the simulator's users choose by. Items that were offered but not shown are no
negatives: the user never saw them.

:func:`init_from_pretrained` then copies the user encoder and the item tower (and, on request, the
pair layers) into a DQN's online and target networks, so RL starts from features that already
describe the user's taste; :class:`ChoicePolicy` is the frozen pre-trained model acting on its own
(the candidate with the highest click logit), the baseline fine-tuning must beat.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from agents.base import Recommender
from agents.dqn import PairQAgent
from agents.q_networks import ENCODERS, PairNetwork
from recsim_env.config import Validated, bounded
from recsim_env.io import progress_enabled
from recsim_env.logs.steps import LoggedSteps
from recsim_env.observation import ObservationLayout

#: What :func:`init_from_pretrained` may copy beyond the towers: nothing, the first pair layer, or all of it.
PAIR_LAYERS = ("none", "first", "all")


@dataclass(frozen=True)
class PretrainConfig(Validated):
    """Architecture (it must match the DQN it initialises) and optimisation of the choice model."""

    hidden: int = bounded(64, ge=1, le=4096, doc="width of the user embedding and the pair MLP (the DQN's hidden)")
    encoder: str = "mlp"
    epochs: int = bounded(5, ge=1, le=10_000, doc="passes over the logged steps")
    batch_size: int = bounded(512, ge=1, le=1_000_000, doc="logged steps per gradient step")
    learning_rate: float = bounded(1e-3, ge=0.0, le=1.0, doc="Adam step size (0 keeps the initial weights: a control)")
    weight_decay: float = bounded(0.0, ge=0.0, le=1.0, doc="Adam L2 penalty")
    max_grad_norm: float = bounded(10.0, gt=0.0, le=1e6, doc="gradient norm clip")
    seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the initial weights and the batch order")
    torch_threads: int = bounded(1, ge=0, le=256, doc="torch intra-op threads while training (0 = leave as is)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder not in ENCODERS:
            raise ValueError(f"PretrainConfig.encoder={self.encoder!r}: allowed {', '.join(map(repr, ENCODERS))}")


def build_network(layout: ObservationLayout, config: PretrainConfig) -> PairNetwork:
    """The choice model's untrained network: a click logit per item, a no-click logit per user, seeded."""
    with torch.random.fork_rng(devices=[]):  # the weights come from the seed, the global RNG is untouched
        torch.manual_seed(config.seed)
        return PairNetwork(layout, config.hidden, config.encoder, item_outputs=1, state_outputs=1)


def choice_tensors(steps: LoggedSteps) -> dict[str, torch.Tensor]:
    """Per logged step: ``obs (S, D)``, shown item rows ``items (S, K, item_dim)``, ``shown_mask (S, K)``
    (False for a repeated slate position, shown once) and ``target (S,)``: the clicked position, or
    ``K`` for no click."""
    shown = np.asarray(steps.shown, np.int64)
    k = shown.shape[1]
    valid = shown >= 0
    if k > 1:  # a repeated index is shown once: keep its first position
        earlier = (shown[:, :, None] == shown[:, None, :]) & np.tri(k, k, -1, dtype=bool)[None]
        valid &= ~earlier.any(axis=2)
    match = (shown == np.asarray(steps.item, np.int64)[:, None]) & valid
    clicked = np.asarray(steps.click, bool) & match.any(axis=1)
    target = np.where(clicked, match.argmax(axis=1), k)
    features = np.asarray(steps.item_features, np.float32)[np.clip(shown, 0, None)]
    return {"obs": torch.as_tensor(np.asarray(steps.obs, np.float32)), "items": torch.as_tensor(features),
            "shown_mask": torch.as_tensor(valid), "target": torch.as_tensor(target)}


def choice_logits(network: PairNetwork, obs: torch.Tensor, items: torch.Tensor, shown_mask: torch.Tensor,
                  ) -> torch.Tensor:
    """``(B, K + 1)`` logits of clicking each shown item, then of no click (masked positions: -inf)."""
    scores, none = network.score_items(obs, items)
    return torch.cat([scores[..., 0].masked_fill(~shown_mask, float("-inf")), none], dim=1)


def choice_metrics(network: PairNetwork, steps: LoggedSteps, batch_size: int = 4096) -> dict[str, float]:
    """Mean cross-entropy of the users' choices and the share predicted exactly (argmax of the logits)."""
    data = choice_tensors(steps)
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data["target"]), batch_size):
            part = {key: value[start:start + batch_size] for key, value in data.items()}
            logits = choice_logits(network, part["obs"], part["items"], part["shown_mask"])
            total_loss += float(F.cross_entropy(logits, part["target"], reduction="sum"))
            correct += int((logits.argmax(dim=1) == part["target"]).sum())
    n = max(len(data["target"]), 1)
    return {"cross_entropy": total_loss / n, "accuracy": correct / n}


@dataclass
class Pretrained:
    """A fitted choice model: its network, the layout it reads, its config and how training went."""

    network: PairNetwork
    layout: ObservationLayout
    config: PretrainConfig
    losses: list[float] = field(default_factory=list)
    train_steps: int = 0
    wall_time: float = 0.0


def pretrain(steps: LoggedSteps, layout: ObservationLayout, config: PretrainConfig | None = None,
             progress: bool | None = None, **overrides: Any) -> Pretrained:
    """Fit the choice model on every logged step of ``steps`` (users never used for evaluation).

    Args:
        steps: Logged steps of a behaviour policy (:func:`~recsim_env.logs.steps.collect_steps`).
        layout: The layout of ``steps.obs`` (the env's ``ObservationLayout``).
        config: Architecture and optimisation; keyword ``overrides`` replace fields.
        progress: Show a progress bar (``None``: only on a terminal).

    Raises:
        ValueError: the logged observations or items do not have the layout's sizes, or there are none.
    """
    config = dataclasses.replace(config or PretrainConfig(), **overrides)
    obs = np.asarray(steps.obs)
    if obs.ndim != 2 or obs.shape[1] != layout.size or len(obs) == 0:
        raise ValueError(f"steps.obs has shape {obs.shape}; the layout reads at least one observation of size "
                         f"{layout.size}")
    if np.asarray(steps.item_features).shape[1:] != (layout.item_dim,):
        raise ValueError(f"steps.item_features has shape {np.asarray(steps.item_features).shape}; the layout "
                         f"reads items of {layout.item_dim} features")
    network = build_network(layout, config)
    data = choice_tensors(steps)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    n = len(data["target"])
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    batches = -(-n // config.batch_size)
    bar = tqdm(total=config.epochs * batches, unit="batch", desc=f"pretrain {config.encoder}", leave=False,
               disable=not progress_enabled(progress))
    losses: list[float] = []
    start = time.perf_counter()
    try:
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=generator)
            epoch_loss = 0.0
            for first in range(0, n, config.batch_size):
                index = order[first:first + config.batch_size]
                logits = choice_logits(network, data["obs"][index], data["items"][index], data["shown_mask"][index])
                loss = F.cross_entropy(logits, data["target"][index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(network.parameters(), config.max_grad_norm)
                optimizer.step()
                epoch_loss += float(loss.detach()) * len(index)
                bar.update(1)
            losses.append(epoch_loss / n)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    network.requires_grad_(False)
    return Pretrained(network=network, layout=layout, config=config, losses=losses, train_steps=n,
                      wall_time=time.perf_counter() - start)


def _copy(target: torch.nn.Module, source: torch.nn.Module) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            if t.shape != s.shape:
                raise ValueError(f"cannot copy a {tuple(s.shape)} weight into a {tuple(t.shape)} one")
            t.copy_(s)


def init_from_pretrained(agent: PairQAgent, pretrained: Pretrained | PairNetwork, pair: str = "none") -> list[str]:
    """Copy the pre-trained user encoder and item tower into a DQN's online and target Q-networks.

    The towers carry what the log teaches about users and items; the Q-specific part starts fresh.
    ``pair="first"`` also copies the user side and the hidden layer of the pair MLP; ``"all"`` copies
    its output layer too, so the initial Q-values are the click logits. The optimizer's references
    stay valid (weights are copied in place) and its state is untouched (a fresh agent's is empty).

    Returns:
        The names of the submodules copied.

    Raises:
        ValueError: ``pair`` is not one of :data:`PAIR_LAYERS`, or the networks' layouts or sizes differ.
    """
    if pair not in PAIR_LAYERS:
        raise ValueError(f"pair={pair!r}: allowed {', '.join(map(repr, PAIR_LAYERS))}")
    source = pretrained.network if isinstance(pretrained, Pretrained) else pretrained
    parts = ["encoder", "item_in"] + {"none": [], "first": ["user_in", "pair.1"],
                                      "all": ["user_in", "pair.1", "pair.3"]}[pair]
    for nets in (agent.online, agent.target):
        q = nets["q"]
        if q.layout != source.layout:
            raise ValueError(f"the pre-trained network reads {source.layout}, the agent {q.layout}")
        if q.encoder.kind != source.encoder.kind:
            raise ValueError(f"the pre-trained encoder is {source.encoder.kind!r}, the agent's {q.encoder.kind!r}")
        for name in parts:
            _copy(q.get_submodule(name), source.get_submodule(name))
    return parts


class ChoicePolicy(Recommender):
    """The frozen choice model as a policy: show the candidate with the highest click logit.

    It is the greedy "most likely to be clicked" recommender that the sequence model is on its own;
    it also ranks the catalogue and predicts clicks at logged steps, like the other agents.
    """

    name = "pretrained"

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, pretrained: Pretrained):
        super().__init__(env)
        self.pretrained = pretrained
        self.network = pretrained.network

    def scores(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        with torch.no_grad():
            return self.network(torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32))[0][..., 0].numpy()

    def act(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> np.ndarray:
        return self.scores(obs).argmax(axis=1)

    def catalogue_scores(self, steps: LoggedSteps) -> np.ndarray:
        """``(S, n_items)`` click logit of every catalogue item at each logged step."""
        obs = torch.as_tensor(np.asarray(steps.obs), dtype=torch.float32)
        items = torch.as_tensor(np.asarray(steps.item_features), dtype=torch.float32)
        with torch.no_grad():
            return self.network.score_items(obs, items)[0][..., 0].numpy()

    def click_probability(self, steps: LoggedSteps) -> np.ndarray:
        """``(S, K)`` the model's probability of each shown item being the one clicked."""
        data = choice_tensors(steps)
        with torch.no_grad():
            logits = choice_logits(self.network, data["obs"], data["items"], data["shown_mask"])
            return torch.softmax(logits, dim=1)[:, :-1].numpy()
