"""Experience for off-policy learning: n-step transitions from a vector env, and a replay buffer.

Two parts with one job each:

* :class:`NStepWindow` turns the batched steps of a vector env into n-step transitions
  ``(obs, action, R, discount, next_obs)`` with ``R = r_t + g r_{t+1} + ... + g^{k-1} r_{t+k-1}`` and
  ``discount = g^k`` (``k <= n``), or ``discount = 0`` when the episode terminated inside the window.
  A truncated episode (a time limit) still bootstraps from its last observation. The step into a
  NEXT_STEP autoreset is no transition at all (its action was ignored) and is dropped.
* :class:`ReplayBuffer` stores transitions in preallocated numpy arrays (a ring) and samples uniform
  minibatches with a ``torch.Generator``, so sampling is seeded apart from everything else.

The buffer's ``state_dict`` holds tensors and numbers only, so a checkpoint can keep it and be read
back with ``torch.load(..., weights_only=True)``. The window needs no state in a checkpoint: the
training loop flushes it first (:meth:`NStepWindow.flush`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: The fields of a transition besides the observations, with their dtypes.
_SCALARS = {"reward": np.float32, "discount": np.float32, "clicked": np.int64}


class NStepWindow:
    """Per-user sliding windows of the last ``n`` steps, all users advanced together.

    Slot ``t % n`` holds the step taken at vector step ``t``; each slot keeps the return summed so
    far from that step on and a count: during :meth:`push` the number of rewards it holds, between
    pushes one more (the power of ``g`` the next reward gets is ``count - 1``); 0 marks an empty
    slot. A slot is emitted as a transition when it holds ``n`` rewards, or when its user's episode
    ends (then every open slot of that user is emitted, with discount 0 on termination and ``g^k``
    on truncation).

    Args:
        n_envs: Users in the vector env.
        n_step: Rewards summed before bootstrapping (1 = one-step Q-learning).
        discount: Per-step discount ``g``.
        obs_dim: Length of a flat observation.
        action_shape: ``()`` for one item per step, ``(K,)`` for slates.
        session_discount: Extra factor on everything after a session end inside the window (the
            user left and comes back later, see :class:`~agents.dqn.DQNConfig`); 1 = none.
    """

    def __init__(self, n_envs: int, n_step: int, discount: float, obs_dim: int,
                 action_shape: tuple[int, ...] = (), session_discount: float = 1.0):
        if n_step < 1:
            raise ValueError(f"n_step={n_step} is out of range: allowed integers >= 1")
        self.n_envs, self.n_step, self.discount = n_envs, n_step, float(discount)
        self.session_discount = float(session_discount)
        self.scale = np.ones((n_step, n_envs), np.float64)  # product of session discounts met so far
        self.obs = np.zeros((n_step, n_envs, obs_dim), np.float32)
        self.action = np.zeros((n_step, n_envs, *action_shape), np.int64)
        self.clicked = np.full((n_step, n_envs), -1, np.int64)
        self.ret = np.zeros((n_step, n_envs), np.float64)
        self.count = np.zeros((n_step, n_envs), np.int64)
        self.t = 0

    def push(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
             terminated: np.ndarray, truncated: np.ndarray, autoreset: np.ndarray,
             clicked: np.ndarray | None = None, session_ended: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Add one vector step; return the transitions that are complete now (users first).

        Args:
            obs: ``(B, D)`` observations the actions were taken in.
            action: ``(B,)`` or ``(B, K)`` actions.
            reward, terminated, truncated: ``(B,)`` results of the step.
            next_obs: ``(B, D)`` observations after the step (the final one where an episode ended).
            autoreset: ``(B,)`` users whose step was a NEXT_STEP reset: nothing is recorded for them.
            clicked: ``(B,)`` slate position the user clicked, ``-1`` for none (SlateQ reads it).
            session_ended: ``(B,)`` users who left their session this step (``info["session_ended"]``).

        Returns:
            ``obs, action, reward, discount, next_obs, clicked`` for each emitted transition.
        """
        live = ~np.asarray(autoreset, bool)
        slot = self.t % self.n_step
        self.obs[slot] = obs
        self.action[slot] = action
        self.clicked[slot] = -1 if clicked is None else clicked
        self.ret[slot] = 0.0
        self.scale[slot] = 1.0
        self.count[slot] = live  # a reset step opens no slot
        open_ = self.count > 0
        # The new reward enters every open slot of its user, discounted by that slot's age.
        age = np.maximum(self.count - 1, 0)
        weight = self.scale * self.discount ** age
        self.ret += np.where(open_, weight * np.asarray(reward, np.float64)[None, :], 0.0)
        if session_ended is not None and self.session_discount != 1.0:
            self.scale[:, live & np.asarray(session_ended, bool)] *= self.session_discount
        ended = live & (np.asarray(terminated, bool) | np.asarray(truncated, bool))
        emit = open_ & ((self.count == self.n_step) | ended[None, :])
        slots, users = np.nonzero(emit)
        bootstrap = np.where(np.asarray(terminated, bool)[users], 0.0,
                             self.scale[slots, users] * self.discount ** self.count[slots, users])
        out = {
            "obs": self.obs[slots, users], "action": self.action[slots, users],
            "reward": self.ret[slots, users].astype(np.float32), "discount": bootstrap.astype(np.float32),
            "next_obs": np.asarray(next_obs, np.float32)[users], "clicked": self.clicked[slots, users],
        }
        self.count[emit] = 0
        self.count[open_ & ~emit] += 1
        self.t += 1
        return out

    def flush(self, next_obs: np.ndarray) -> dict[str, np.ndarray]:
        """Emit every open slot as truncated at ``next_obs`` (for a cut such as a re-draw of the users).

        Between pushes a slot's count is one more than the rewards it holds, hence ``g^(count - 1)``.
        """
        slots, users = np.nonzero(self.count > 0)
        out = {
            "obs": self.obs[slots, users], "action": self.action[slots, users],
            "reward": self.ret[slots, users].astype(np.float32),
            "discount": (self.scale[slots, users] * self.discount ** (self.count[slots, users] - 1)).astype(np.float32),
            "next_obs": np.asarray(next_obs, np.float32)[users], "clicked": self.clicked[slots, users],
        }
        self.count[:] = 0
        self.t = 0  # an empty window restarts at slot 0, so a resumed run fills slots in the same order
        return out


class ReplayBuffer:
    """A ring of the last ``capacity`` transitions in preallocated numpy arrays.

    Args:
        capacity: Transitions kept; the oldest are overwritten.
        obs_dim: Length of a flat observation.
        action_shape: ``()`` for one item per step, ``(K,)`` for slates.
    """

    def __init__(self, capacity: int, obs_dim: int, action_shape: tuple[int, ...] = ()):
        if capacity < 1:
            raise ValueError(f"capacity={capacity} is out of range: allowed integers >= 1")
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, *action_shape), np.int64)
        self.scalars = {key: np.zeros(capacity, dtype) for key, dtype in _SCALARS.items()}
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Append a batch of transitions (as :meth:`NStepWindow.push` returns them)."""
        n = len(batch["reward"])
        if n == 0:
            return
        if n > self.capacity:  # only the newest fit
            batch = {key: value[-self.capacity:] for key, value in batch.items()}
            n = self.capacity
        index = (self.pos + np.arange(n)) % self.capacity
        self.obs[index] = batch["obs"]
        self.next_obs[index] = batch["next_obs"]
        self.action[index] = batch["action"]
        for key, column in self.scalars.items():
            column[index] = batch[key]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A uniform minibatch (with replacement) as torch tensors."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = torch.randint(0, self.size, (batch_size,), generator=generator).numpy()
        batch = {"obs": self.obs[index], "next_obs": self.next_obs[index], "action": self.action[index]}
        batch.update({key: column[index] for key, column in self.scalars.items()})
        return {key: torch.from_numpy(value) for key, value in batch.items()}

    def state_dict(self) -> dict[str, Any]:
        """The filled part only, so a half-empty buffer makes a small checkpoint."""
        n = self.size
        state: dict[str, Any] = {"obs": torch.from_numpy(self.obs[:n].copy()),
                                 "next_obs": torch.from_numpy(self.next_obs[:n].copy()),
                                 "action": torch.from_numpy(self.action[:n].copy()),
                                 "pos": self.pos, "size": n, "capacity": self.capacity}
        state.update({key: torch.from_numpy(column[:n].copy()) for key, column in self.scalars.items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay buffer capacity {state['capacity']} != {self.capacity}")
        n = int(state["size"])
        for key in ("obs", "next_obs", "action"):
            _copy_into(getattr(self, key)[:n], state[key], f"replay {key}")
        for key, column in self.scalars.items():
            _copy_into(column[:n], state[key], f"replay {key}")
        self.pos, self.size = int(state["pos"]), n


def _copy_into(target: np.ndarray, source: torch.Tensor, what: str) -> None:
    value = source.numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
    if value.shape != target.shape:
        raise ValueError(f"{what} has shape {tuple(value.shape)}, expected {target.shape}")
    target[...] = value
