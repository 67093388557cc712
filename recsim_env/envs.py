"""Gymnasium adapters over the batched simulator: a single-user ``Env`` and a native ``VectorEnv``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recsim_env import render
from recsim_env.config import EnvConfig, make_config
from recsim_env.observation import ObservationEncoder, ObservationLayout
from recsim_env.simulator import Simulator, StepOutcome


def _action_space(config: EnvConfig) -> spaces.Space:
    if config.slate_size == 1:
        return spaces.Discrete(config.n_candidates)
    return spaces.MultiDiscrete(np.full(config.slate_size, config.n_candidates))


def _single_positions(config: EnvConfig) -> tuple[np.ndarray, ...]:
    """The ``(1, 1)`` positions of each action of a one-user, one-item env (none for slates), made once.

    Read-only: the simulator only reads positions, so every step can share them.
    """
    if config.slate_size != 1:
        return ()
    table = np.arange(config.n_candidates, dtype=np.int64).reshape(-1, 1, 1)
    table.flags.writeable = False
    return tuple(table)


def _to_positions(action: Any, space: spaces.Space, n_users: int, config: EnvConfig,
                  single: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """Validate an action (single or batched) and return slate positions ``(B, K)``; raise clearly.

    ``single`` (from ``_single_positions``) gives the fast path of the common single-env call.
    """
    if single and (type(action) is int or isinstance(action, np.integer)) and 0 <= action < len(single):
        return single[action]  # a bool is no int here: ``type(True) is bool``
    arr = np.asarray(action)
    expected = (n_users, config.slate_size) if isinstance(space, spaces.MultiDiscrete) and arr.ndim == 2 \
        else space.shape
    if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        raise TypeError(f"action {action!r} has dtype {arr.dtype}; {space} needs integers")
    if arr.shape != expected:
        raise ValueError(f"action {action!r} has shape {arr.shape}; {space} needs shape {expected}")
    if arr.size and (np.minimum.reduce(arr, None) < 0 or np.maximum.reduce(arr, None) >= config.n_candidates):
        raise ValueError(f"action {action!r} is outside {space}: every entry must be in "
                         f"[0, {config.n_candidates})")
    return arr.reshape(n_users, config.slate_size).astype(np.int64, copy=False)


def _info(sim: Simulator, out: StepOutcome | None, index: int | slice) -> dict[str, Any]:
    """Copies of the candidates and the user state, and this step's response (arrays made fresh by the step)."""
    candidates, user_state = sim.candidates[index].copy(order="K"), sim.state.snapshot(index)
    if out is None:
        return {"candidates": candidates, "user_state": user_state}
    return {"candidates": candidates, "user_state": user_state, "click": out.click[index],
            "engagement": out.engagement[index], "position": out.position[index], "item": out.item[index],
            "slate": out.slate[index], "session_ended": out.session_ended[index]}


def _resolve(preset: str, config: EnvConfig | None, overrides: dict[str, Any]) -> EnvConfig:
    return make_config(config if config is not None else preset, **overrides)


class RecommendationEnv(gym.Env[np.ndarray, Any]):
    """## Description
    A recommender serves one simulated user whose interests drift with what they consume. Each step
    the catalogue offers ``n_candidates`` items; the agent shows one (or a slate of ``slate_size``);
    the user clicks one or nothing (conditional logit or cascade), watches part of it, and their
    interest, satiation and time budget move. Clickbait looks appealing but disappoints and drains
    the budget; a topic consumed too often bores the user, who may then leave.

    ## Action Space
    ``Discrete(n_candidates)`` (an index into the candidates), or for slates
    ``MultiDiscrete([n_candidates] * slate_size)``; a repeated index is shown once, at its first position.

    ## Observation Space
    A flat ``Box`` in float32 with finite bounds; :class:`~recsim_env.observation.ObservationLayout`
    names the parts:

    | part       | size                                  | content                                        |
    |------------|---------------------------------------|------------------------------------------------|
    | history    | history_length x (n_topics + 5)        | past items (features) and responses, oldest first |
    | candidates | n_candidates x (n_topics + 3)          | topic mixture, appeal, quality score, length    |
    | context    | 2                                     | session step / 100, day / horizon               |
    | user_state | 2 n_topics + 1 (``observe_user_state``) | true interest, satiation, budget               |

    ## Rewards
    Engagement (time spent) by default; ``reward="click"`` or a callable on the response dict.

    ## Episode End
    Terminated when the user leaves: budget exhausted, or the boredom hazard fires; with
    ``multi_session`` the user may come back for further sessions until the horizon. Truncation
    comes from ``max_episode_steps`` at registration.

    ## Arguments
    ``preset`` (a name in ``recsim_env.PRESETS``), ``config`` (an ``EnvConfig``), ``render_mode``
    (``"ansi"`` or ``"rgb_array"``), and any config field as a keyword override.

    ## Version History
    * v0: initial version.

    >>> import gymnasium as gym, recsim_env
    >>> env = gym.make("recsim_env/InterestDrift-v0", n_items=500)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape == env.observation_space.shape
    True
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, preset: str = "default", config: EnvConfig | None = None,
                 render_mode: str | None = None, **overrides: Any):
        self.config = _resolve(preset, config, overrides)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: allowed {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.simulator = Simulator(self.config, n_users=1)
        self.layout = ObservationLayout.from_config(self.config)
        self._encoder = ObservationEncoder(self.layout, 1, self.config, self.simulator.catalog)
        self.observation_space = self.layout.space()
        self.action_space = _action_space(self.config)
        self._last: StepOutcome | None = None
        self._terminated = True
        self._single_positions = _single_positions(self.config)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.simulator.reset(self.np_random)
        self._encoder.clear()
        self._last = None
        self._terminated = False
        obs = self._encoder.encode(self.simulator.candidates, self.simulator.state)
        return obs[0], _info(self.simulator, None, 0)

    def step(self, action: Any):
        if self._terminated:
            raise RuntimeError("the user has left: call reset() before step()")
        positions = _to_positions(action, self.action_space, 1, self.config, self._single_positions)
        sim = self.simulator
        out = sim.step(positions, self.np_random)
        self._encoder.record(sim.shown, out.click, out.engagement)
        obs = self._encoder.encode(sim.candidates, sim.state)
        self._last = out
        self._terminated = terminated = bool(out.terminated[0])
        return obs[0], float(out.reward[0]), terminated, False, _info(sim, out, 0)

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        view = render.UserView.capture(self.simulator, self._last, 0)
        return view.ansi() if self.render_mode == "ansi" else view.rgb_array()


def _add_masks(info: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """Gymnasium's vector-info convention: a boolean ``(num_envs,)`` mask ``_k`` beside every key ``k``,
    inside nested dicts too (``gymnasium.vector.VectorEnv._add_info``); one ``mask`` array for all."""
    for key, value in list(info.items()):
        if isinstance(value, dict):
            _add_masks(value, mask)
        info[f"_{key}"] = mask
    return info


def _read_only(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


class RecommendationVectorEnv(VectorEnv):
    """``num_envs`` users stepped together by one batched simulator (no per-user Python loop).

    ``autoreset_mode``:

    * ``AutoresetMode.NEXT_STEP`` (default): the step after a user's episode ends resets that user
      (its action is ignored, reward 0, not done), so training code must not store that transition;
      ``info["autoreset"]`` marks those users.
    * ``AutoresetMode.SAME_STEP``: a user whose episode ends is reset within the same step; the step
      returns the new episode's first observation, with the last one in ``info["final_obs"]`` (an object
      array, None for the other users) and the last step's info in ``info["final_info"]``, as
      Gymnasium's ``SyncVectorEnv`` does in that mode.

    Every info key ``k`` comes with a boolean ``(num_envs,)`` mask ``_k`` (nested dicts too), as
    Gymnasium's vector envs build them: False for the users a key does not describe this step (the
    response keys of a user who was just reset, whose values are then placeholders). The all-True mask
    is one shared read-only array.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, preset: str = "default", config: EnvConfig | None = None,
                 max_episode_steps: int | None = None, render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, **overrides: Any):
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} is out of range: allowed integers >= 1")
        if render_mode is not None:
            raise ValueError("the vector env does not render; render one user with RecommendationEnv")
        modes = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            mode = None
        if mode not in modes:
            raise ValueError(f"autoreset_mode={autoreset_mode!r}: allowed {', '.join(str(m) for m in modes)}")
        self.autoreset_mode = mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.config = _resolve(preset, config, overrides)
        self.num_envs = int(num_envs)
        self.max_episode_steps = max_episode_steps
        self.render_mode = None
        self.simulator = Simulator(self.config, n_users=self.num_envs)
        self.layout = ObservationLayout.from_config(self.config)
        self._encoder = ObservationEncoder(self.layout, self.num_envs, self.config, self.simulator.catalog)
        self.single_observation_space = self.layout.space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = _action_space(self.config)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._steps = np.zeros(self.num_envs, np.int64)
        self._prev_done = np.zeros(self.num_envs, bool)
        self._started = False
        self._everyone = _read_only(np.ones(self.num_envs, bool))
        #: The all-True masks of a step's info and of its user state, built from the first ones seen.
        self._step_masks: dict[str, np.ndarray] | None = None
        self._state_masks: dict[str, np.ndarray] | None = None
        #: Masks of the keys a reset user's info lacks (its response to the step), as ``_k`` names.
        self._response_masks: tuple[str, ...] = ()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.simulator.reset(self.np_random)
        self._encoder.clear()
        self._steps[:] = 0
        self._prev_done[:] = False
        self._started = True
        sim = self.simulator
        return self._encoder.encode(sim.candidates, sim.state), _add_masks(_info(sim, None, slice(None)),
                                                                           self._everyone)

    def _masked(self, info: dict[str, Any], reset: np.ndarray | None = None) -> dict[str, Any]:
        """A step's ``info`` with its masks: all True (shared), except the response keys of ``reset`` users."""
        if self._step_masks is None:  # the keys are the same every step: build the all-True masks once
            self._step_masks = {f"_{key}": self._everyone for key in info}
            self._state_masks = {f"_{key}": self._everyone for key in info["user_state"]}
            self._response_masks = tuple(f"_{key}" for key in info if key not in _EVERY_USER_KEYS)
        info["user_state"].update(self._state_masks)  # type: ignore[arg-type]
        info.update(self._step_masks)
        if reset is not None:
            kept = ~reset
            for key in self._response_masks:
                info[key] = kept
        return info

    def step(self, actions: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        positions = _to_positions(actions, self.action_space, self.num_envs, self.config)
        sim = self.simulator
        out = sim.step(positions, self.np_random)
        self._encoder.record(sim.shown, out.click, out.engagement)
        self._steps += 1
        terminated = out.terminated.copy()
        truncated = (self._steps >= self.max_episode_steps) if self.max_episode_steps else np.zeros_like(terminated)
        if self.autoreset_mode is AutoresetMode.SAME_STEP:
            return self._step_same(out, terminated, truncated)
        reward = out.reward
        done = self._prev_done
        any_done = np.count_nonzero(done)
        if any_done:
            # NEXT_STEP autoreset: these users' actions were ignored; they start a new episode now.
            sim.reset(self.np_random, done)
            self._encoder.clear(done)
            self._steps[done] = 0
            reward[done] = 0.0
            terminated[done] = False
            truncated[done] = False
            out.click[done] = False
            out.engagement[done] = 0.0
            out.position[done] = -1
            out.item[done] = -1
            out.session_ended[done] = False
        self._prev_done = terminated | truncated
        obs = self._encoder.encode(sim.candidates, sim.state)
        info = _info(sim, out, slice(None))
        info["autoreset"] = done
        return obs, reward, terminated, truncated, self._masked(info, done if any_done else None)

    def _step_same(self, out: StepOutcome, terminated: np.ndarray, truncated: np.ndarray):
        """SAME_STEP: the users whose episode ended start the next one at once; their last observation and
        info go to ``final_obs`` and ``final_info``."""
        sim = self.simulator
        done = terminated | truncated
        obs = self._encoder.encode(sim.candidates, sim.state)
        if not np.count_nonzero(done):
            return obs, out.reward, terminated, truncated, self._masked(_info(sim, out, slice(None)))
        ended = np.flatnonzero(done)
        done = _read_only(done)
        final_info = _add_masks(_info(sim, out, slice(None)), done)
        final_obs = np.full(self.num_envs, None, dtype=object)
        for user, row in zip(ended, obs[ended]):  # the convention's per-env object array: the ended users only
            final_obs[user] = row
        sim.reset(self.np_random, done)
        self._encoder.clear(done)
        self._steps[done] = 0
        info = self._masked(_info(sim, out, slice(None)), done)
        for key, placeholder in _PLACEHOLDERS.items():  # fresh arrays: final_info keeps the real ones
            info[key] = np.where(done, placeholder, info[key])
        info["slate"] = info["slate"].copy()
        info.update(final_obs=final_obs, _final_obs=done, final_info=final_info, _final_info=done)
        return self._encoder.encode(sim.candidates, sim.state), out.reward, terminated, truncated, info


#: Info keys that describe every user, reset or not; the others are the step's response.
_EVERY_USER_KEYS = ("candidates", "user_state", "autoreset")
#: What the response keys of a user who was just reset hold (their masks are False): no click.
_PLACEHOLDERS = {"click": False, "engagement": 0.0, "position": -1, "item": -1, "session_ended": False}
