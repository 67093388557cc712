"""The training loop shared by the replay-based agents (DQN, its myopic twin, SlateQ).

Reads top to bottom like CleanRL's ``dqn.py``: act epsilon-greedily on every user of a vector env,
turn the steps into n-step transitions, store them, take a few gradient steps, log, checkpoint.

Checkpoints and resuming. A checkpoint (``checkpoint.pt``, written atomically) holds the weights,
the target weights, the optimizer, the replay buffer (unless ``checkpoint_replay=False``, when a
resumed run refills it from scratch), the step counters and the states of the exploration and
sampling generators. The simulator's users are not pickled; instead every checkpoint ends a
*segment*: the open n-step windows are flushed as truncated transitions (they bootstrap, as at a
time limit) and every user is re-drawn from a seed derived from ``(seed, segment)``. An
uninterrupted run does exactly the same at the same step, so a run resumed from a checkpoint
continues bit for bit as the run that was never stopped (same machine, same thread count).

Logs: ``progress.csv`` (one row every ``log_every`` vector steps) and TensorBoard events under
``tb/`` with CleanRL's tags (``charts/episodic_return``, ``losses/td_loss``, ``charts/SPS``).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tqdm import tqdm

from agents.dqn import PairQAgent, check_meta, read_checkpoint
from agents.episodes import EpisodeLog
from agents.replay import NStepWindow, ReplayBuffer
from agents.schedules import LinearSchedule
from recsim_env.io import atomic_write, progress_enabled

CHECKPOINT = "checkpoint.pt"
#: Config fields a resumed run may change: the budget, and how it logs and saves.
RESUMABLE = frozenset({"total_steps", "log_every", "checkpoint_every", "checkpoint_replay", "torch_threads"})
_COLUMNS = ("step", "episodes", "episodic_return", "episodic_length", "td_loss", "q_mean", "epsilon", "sps",
            "elapsed")


@dataclass
class TrainResult:
    """What one call of :func:`run` did.

    Attributes:
        agent: The trained agent (greedy ``act``).
        steps: User-steps done in total, including those before a resume.
        episode_returns: Returns of the training episodes that ended in this call, in order.
        curve_returns: Returns of this call's training episodes in the order they began, without the
            episodes cut short by the end of a segment (see :mod:`agents.episodes`).
        log: The rows written to ``progress.csv`` in this call.
        wall_time: Seconds this call took.
        steps_per_second: Median over the log rows of user-steps per second (learning included).
        env_seeds: Seeds the env was reset with (the users trained on); evaluate on others.
        checkpoint: The last checkpoint written, if any.
    """

    agent: PairQAgent
    steps: int
    episode_returns: np.ndarray
    log: list[dict[str, float]]
    wall_time: float
    steps_per_second: float
    env_seeds: list[int] = field(default_factory=list)
    checkpoint: Path | None = None
    curve_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))


def segment_seed(seed: int, segment: int) -> int:
    """The env seed of one segment of training, derived from the run's seed."""
    return int(np.random.SeedSequence([seed, 1, segment]).generate_state(1)[0])


def check_vector_env(env: Any) -> None:
    """Refuse what the loop cannot train on, with the reason."""
    if not isinstance(env, gym.vector.VectorEnv):
        raise TypeError(f"training needs a gymnasium VectorEnv (gym.make_vec), got {type(env).__name__}")
    mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if mode != AutoresetMode.NEXT_STEP:
        raise ValueError(f"training expects NEXT_STEP autoreset (transitions into a reset are skipped), got {mode}")


class _Logger:
    """``progress.csv`` and TensorBoard, appended to on resume."""

    def __init__(self, out_dir: Path | None, step: int):
        self.rows: list[dict[str, float]] = []
        self.csv_path = out_dir / "progress.csv" if out_dir else None
        self.writer = None
        if out_dir is None:
            return
        if not self.csv_path.exists() or step == 0:
            self.csv_path.write_text(",".join(_COLUMNS) + "\n", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter  # needs the `rl` extra (tensorboard)

        self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=step or None)

    def write(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        if self.csv_path is None:
            return
        with self.csv_path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow([row[c] for c in _COLUMNS])
        step = int(row["step"])
        for tag, key in (("charts/episodic_return", "episodic_return"), ("charts/episodic_length", "episodic_length"),
                         ("losses/td_loss", "td_loss"), ("losses/q_values", "q_mean"),
                         ("charts/epsilon", "epsilon"), ("charts/SPS", "sps")):
            if math.isfinite(row[key]):
                self.writer.add_scalar(tag, row[key], step)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _meta(agent: PairQAgent, env: gym.vector.VectorEnv) -> dict[str, Any]:
    config = {k: v for k, v in dataclasses.asdict(agent.config).items() if k not in RESUMABLE}
    spec = getattr(env, "spec", None)
    return {**agent.describe(), "config": config, "num_envs": env.num_envs,
            "env_id": spec.id if spec is not None else type(env.unwrapped).__name__}


def run(agent: PairQAgent, env: gym.vector.VectorEnv, out_dir: str | Path | None = None,
        progress: bool | None = None, resume: bool = True, stop_at: int | None = None) -> TrainResult:
    """Train ``agent`` on ``env`` for ``agent.config.total_steps`` user-steps.

    Args:
        agent: A DQN or SlateQ agent built for ``env``.
        env: A vector env with NEXT_STEP autoreset.
        out_dir: Folder for the CSV log, TensorBoard events and the checkpoint; ``None`` writes nothing.
        progress: Show a progress bar (``None``: only on a terminal).
        resume: Continue from ``out_dir/checkpoint.pt`` if it exists (it must match agent and env).
        stop_at: Pause once this many user-steps are done (the schedules still follow
            ``total_steps``), writing a checkpoint that a later call resumes from.

    Raises:
        ValueError: the checkpoint is unreadable or was written for another agent, config or env.
    """
    check_vector_env(env)
    cfg = agent.config
    n_envs, obs_dim = env.num_envs, agent.layout.size
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    window = NStepWindow(n_envs, cfg.n_step, cfg.discount, obs_dim, agent.action_shape, cfg.session_discount)
    replay = ReplayBuffer(cfg.buffer_size, obs_dim, agent.action_shape)
    explore_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    sampler = torch.Generator().manual_seed(cfg.seed)
    epsilon = LinearSchedule(cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_fraction)
    counters = {"steps": 0, "vector_steps": 0, "segment": 0, "episodes": 0}
    meta = _meta(agent, env)

    checkpoint = out / CHECKPOINT if out is not None else None
    if resume and checkpoint is not None and checkpoint.exists():
        payload = read_checkpoint(checkpoint)
        check_meta(checkpoint, payload["meta"], meta)
        agent.load_state_dict(payload["agent"])
        if payload.get("replay") is not None:
            replay.load_state_dict(payload["replay"])
        explore_rng.bit_generator.state = payload["rng"]["explore"]
        sampler.set_state(payload["rng"]["sampler"])
        counters.update({k: int(v) for k, v in payload["counters"].items()})
        counters["segment"] += 1  # a checkpoint ends its segment

    def save() -> Path:
        payload = {"meta": meta, "online": agent.online.state_dict(), "agent": agent.state_dict(),
                   "replay": replay.state_dict() if cfg.checkpoint_replay else None,
                   "rng": {"explore": explore_rng.bit_generator.state, "sampler": sampler.get_state()},
                   "counters": dict(counters)}
        return atomic_write(checkpoint, lambda tmp: torch.save(payload, tmp))  # type: ignore[arg-type]

    def start_segment() -> np.ndarray:
        seed = segment_seed(cfg.seed, counters["segment"])
        env_seeds.append(seed)
        return env.reset(seed=seed)[0]

    threads = torch.get_num_threads()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    logger = _Logger(out, counters["steps"])
    bar = tqdm(total=cfg.total_steps, initial=counters["steps"], unit="step", desc=agent.name, leave=False,
               disable=not progress_enabled(progress))
    env_seeds: list[int] = []
    returns: list[float] = []
    episodes = EpisodeLog(n_envs, counters["steps"])
    since_log: dict[str, list[float]] = {"return": [], "length": [], "td_loss": [], "q_mean": []}
    end = cfg.total_steps if stop_at is None else min(stop_at, cfg.total_steps)
    last_checkpoint: Path | None = None
    start = t_log = time.perf_counter()
    steps_at_log = counters["steps"]
    try:
        obs = start_segment()
        episode_return, episode_length = np.zeros(n_envs), np.zeros(n_envs, np.int64)
        previous_done = np.zeros(n_envs, bool)
        while counters["steps"] < end:
            eps = epsilon(counters["steps"] / cfg.total_steps)
            actions = agent.explore(obs, eps, explore_rng)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            skip = np.asarray(info.get("autoreset", previous_done), bool)  # the NEXT_STEP reset step
            replay.add(window.push(obs, actions, reward, next_obs, terminated, truncated, skip, info.get("position"),
                                   info.get("session_ended")))
            live = ~skip
            episode_return += np.where(live, reward, 0.0)
            episode_length += live
            done = (np.asarray(terminated) | np.asarray(truncated)) & live
            if done.any():
                episodes.record(done, episode_return, counters["steps"] + n_envs)
                returns.extend(episode_return[done].tolist())
                since_log["return"].extend(episode_return[done].tolist())
                since_log["length"].extend(episode_length[done].tolist())
                counters["episodes"] += int(done.sum())
                episode_return[done], episode_length[done] = 0.0, 0
            previous_done = np.asarray(terminated) | np.asarray(truncated)
            obs = next_obs
            counters["vector_steps"] += 1
            counters["steps"] += n_envs
            bar.update(n_envs)

            if (counters["steps"] >= cfg.learning_starts and len(replay) >= cfg.batch_size
                    and counters["vector_steps"] % cfg.train_every == 0):
                for _ in range(cfg.gradient_steps):
                    losses = agent.learn(replay.sample(cfg.batch_size, sampler))
                    since_log["td_loss"].append(losses["td_loss"])
                    since_log["q_mean"].append(losses["q_mean"])

            if counters["vector_steps"] % cfg.log_every == 0:
                now = time.perf_counter()
                row = {"step": counters["steps"], "episodes": counters["episodes"],
                       "episodic_return": _mean(since_log["return"]), "episodic_length": _mean(since_log["length"]),
                       "td_loss": _mean(since_log["td_loss"]), "q_mean": _mean(since_log["q_mean"]),
                       "epsilon": eps, "sps": (counters["steps"] - steps_at_log) / max(now - t_log, 1e-9),
                       "elapsed": now - start}
                logger.write(row)
                bar.set_postfix(ret=f"{row['episodic_return']:.1f}", eps=f"{eps:.2f}", refresh=False)
                t_log, steps_at_log = now, counters["steps"]
                since_log = {key: [] for key in since_log}

            boundary = cfg.checkpoint_every and (counters["steps"] // cfg.checkpoint_every
                                                 > (counters["steps"] - n_envs) // cfg.checkpoint_every)
            if boundary or counters["steps"] >= end:
                replay.add(window.flush(obs))  # the segment ends here: open windows bootstrap like a time limit
                episodes.restart(counters["steps"])
                if checkpoint is not None:
                    last_checkpoint = save()
                if counters["steps"] < end:
                    counters["segment"] += 1
                    obs = start_segment()
                    episode_return[:], episode_length[:], previous_done[:] = 0.0, 0, False
    finally:
        bar.close()
        logger.close()
        torch.set_num_threads(threads)
    wall = time.perf_counter() - start
    sps = [row["sps"] for row in logger.rows]
    return TrainResult(agent=agent, steps=counters["steps"], episode_returns=np.array(returns), log=logger.rows,
                       wall_time=wall, steps_per_second=float(np.median(sps)) if sps else counters["steps"] / wall,
                       env_seeds=env_seeds, checkpoint=last_checkpoint,
                       curve_returns=episodes.returns_in_start_order())


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
