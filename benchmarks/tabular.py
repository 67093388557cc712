"""Tabular Q-learning against the exact optimum of the finite-MDP preset.

    python -m benchmarks.tabular [--seeds 5] [--episodes 20000] [--envs 32] [--eval-every 500]
        [--first-seed 0] [--out results/tabular]

``recsim_env/TabularDrift-v0`` exposes its transition and reward arrays, so nothing here is
estimated by sampling: value iteration gives ``V*`` and ``Q*``, the myopic policy (highest expected
immediate reward) and the uniformly random policy are valued exactly, and Q-learning's greedy policy
is valued exactly every ``--eval-every`` training episodes by solving its linear Bellman equations.
The learning curve therefore shows what the table has learned, without evaluation noise.

Writes ``qlearning_vs_optimum.png`` and ``.svg`` (the curve, IQM over seeds with a 95% bootstrap
band, against the optimum and the myopic policy), ``results.md`` and ``results.json``: per seed and
aggregated, the final fraction of ``V*`` reached and the agreement with the optimal policy on the
states the optimal policy visits.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

import recsim_env  # noqa: F401  (registers the env ids)
from agents.qlearning import TabularQLearning
from benchmarks.stats import bootstrap_interval, iqm
from recsim_env.io import atomic_write_text, progress_enabled
from recsim_env.tabular import TabularMDP, policy_value, value_iteration

ENV_ID = "recsim_env/TabularDrift-v0"
PLOT_NAME = "qlearning_vs_optimum"
#: States an optimal episode visits at least this often (expected visits) count as "visited".
VISIT_THRESHOLD = 1e-3


@dataclass(frozen=True)
class TabularBenchConfig:
    """Command-line options; validated on construction so that library callers get the same errors."""

    seeds: int = 5
    first_seed: int = 0
    episodes: int = 20_000
    envs: int = 32
    eval_every: int = 500
    out: str = "results/tabular"

    def __post_init__(self) -> None:
        checks = {"seeds": (self.seeds >= 2, ">= 2 (the band needs at least two seeds)"),
                  "first_seed": (self.first_seed >= 0, ">= 0"),
                  "episodes": (self.episodes >= 1, ">= 1"),
                  "envs": (self.envs >= 1, ">= 1"),
                  "eval_every": (1 <= self.eval_every <= self.episodes, f"[1, episodes={self.episodes}]")}
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)} is out of range: allowed {allowed}")


@dataclass(frozen=True)
class Solution:
    """The exact solution of the MDP and the exact values of the reference policies.

    Attributes:
        mdp: the arrays of the MDP the agent is trained on.
        v_star, q_star: optimal state and action values (value iteration).
        myopic_values: state values of the policy that maximises the expected immediate reward.
        random_values: state values of the uniformly random policy (where an untrained table starts).
    """

    mdp: TabularMDP
    v_star: np.ndarray
    q_star: np.ndarray
    myopic_values: np.ndarray
    random_values: np.ndarray

    @property
    def optimal_policy(self) -> np.ndarray:
        return self.q_star.argmax(axis=1)

    @property
    def myopic_policy(self) -> np.ndarray:
        return self.mdp.reward.argmax(axis=1)

    @property
    def optimal_return(self) -> float:
        """``V*`` of the initial state: the best average return per episode."""
        return float(self.v_star[self.mdp.initial_state])

    @property
    def myopic_return(self) -> float:
        return float(self.myopic_values[self.mdp.initial_state])

    @property
    def random_return(self) -> float:
        return float(self.random_values[self.mdp.initial_state])


@dataclass(frozen=True)
class SeedRun:
    """One seed's training: the exact return of the greedy policy along training, and the end result.

    Attributes:
        episodes: training episodes done at each evaluation.
        returns: exact average return of the greedy policy there (ties split uniformly).
        q: the final table.
        visits: how often training updated each (state, action) pair.
        policy: the final greedy policy as the agent acts (ties broken by the agent's seeded tie-break).
        final_return: exact average return of ``policy``.
        fraction_of_optimum: ``final_return / V*``.
        agreement: share of the optimal policy's visited states where ``policy`` picks the optimal action.
    """

    seed: int
    episodes: np.ndarray
    returns: np.ndarray
    q: np.ndarray
    visits: np.ndarray
    policy: np.ndarray
    final_return: float
    fraction_of_optimum: float
    agreement: float


@dataclass(frozen=True)
class Curve:
    """Learning curves of several seeds on a common grid of training episodes, and their IQM with a band."""

    episodes: np.ndarray
    per_seed: np.ndarray
    iqm: np.ndarray
    low: np.ndarray
    high: np.ndarray


def make_env(num_envs: int, **overrides: Any) -> gym.vector.VectorEnv:
    """The vector env Q-learning trains on; ``overrides`` are ``TabularConfig`` fields."""
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="sync", **overrides)


def stochastic_policy_value(mdp: TabularMDP, probabilities: np.ndarray) -> np.ndarray:
    """Exact state values of a stochastic policy ``pi[s, a]`` (the terminal state is worth 0)."""
    transition = np.einsum("sa,sat->st", probabilities, mdp.transition)
    reward = (probabilities * mdp.reward).sum(axis=1)
    live = np.arange(mdp.terminal)
    values = np.zeros(mdp.n_states)
    values[live] = np.linalg.solve(np.eye(live.size) - transition[np.ix_(live, live)], reward[live])
    return values


def solve(mdp: TabularMDP) -> Solution:
    """Value iteration for ``V*``/``Q*``, and the exact values of the myopic and the random policy."""
    v_star, q_star = value_iteration(mdp.transition, mdp.reward)
    myopic = policy_value(mdp.transition, mdp.reward, mdp.reward.argmax(axis=1))
    uniform = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    return Solution(mdp, v_star, q_star, myopic, stochastic_policy_value(mdp, uniform))


def greedy_return(mdp: TabularMDP, q: np.ndarray) -> float:
    """Exact average return of the greedy policy of ``q``, ties split uniformly.

    Splitting ties makes an untrained (all-zero) table count as the random policy it is; breaking
    them toward the lowest action instead would credit it with whatever action 0 happens to be worth.
    """
    best = q == q.max(axis=1, keepdims=True)
    return float(stochastic_policy_value(mdp, best / best.sum(axis=1, keepdims=True))[mdp.initial_state])


def state_visits(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """Expected visits to each state in one episode from the initial state under ``policy`` (terminal: 0)."""
    live = np.arange(mdp.terminal)
    p_live = mdp.transition[live, policy[live]][:, live]
    start = np.zeros(live.size)
    start[mdp.initial_state] = 1.0
    visits = np.zeros(mdp.n_states)
    visits[live] = np.linalg.solve(np.eye(live.size) - p_live.T, start)
    return visits


def visited_states(mdp: TabularMDP, policy: np.ndarray, threshold: float = VISIT_THRESHOLD) -> np.ndarray:
    """States that ``policy`` visits more than ``threshold`` times per episode on average."""
    return np.flatnonzero(state_visits(mdp, policy) > threshold)


def agreement(solution: Solution, policy: np.ndarray) -> float:
    """Share of the states the optimal policy visits where ``policy`` takes the optimal action."""
    states = visited_states(solution.mdp, solution.optimal_policy)
    return float(np.mean(policy[states] == solution.optimal_policy[states]))


def train_seed(solution: Solution, seed: int, episodes: int, envs: int = 32, eval_every: int = 500,
               progress: bool | None = False, **env_overrides: Any) -> SeedRun:
    """Train Q-learning with one seed, valuing its greedy policy exactly every ``eval_every`` episodes."""
    env = make_env(envs, **env_overrides)
    mdp = solution.mdp
    agent = TabularQLearning(env, episodes=episodes, seed=seed)
    log = agent.train(env, evaluate=lambda a: greedy_return(mdp, a.q), eval_every=eval_every, progress=progress)
    env.close()
    done, returns = (np.array(column, dtype=np.float64) for column in zip(*log.evaluations))
    policy = agent.greedy(np.arange(mdp.n_states))
    final = float(policy_value(mdp.transition, mdp.reward, policy)[mdp.initial_state])
    return SeedRun(seed=seed, episodes=done, returns=returns, q=agent.q.copy(), visits=agent.visits.copy(),
                   policy=policy, final_return=final, fraction_of_optimum=final / solution.optimal_return,
                   agreement=agreement(solution, policy))


def train_seeds(solution: Solution, seeds: list[int], episodes: int, envs: int = 32, eval_every: int = 500,
                progress: bool | None = None, **env_overrides: Any) -> list[SeedRun]:
    """``train_seed`` for every seed, with a progress bar over seeds on a terminal."""
    return [train_seed(solution, seed, episodes, envs, eval_every, progress=False, **env_overrides)
            for seed in tqdm(seeds, desc="Q-learning seeds", unit="seed", disable=not progress_enabled(progress))]


def learning_curve(runs: list[SeedRun], confidence: float = 0.95) -> Curve:
    """The seeds' curves on a common episode grid, their IQM and a bootstrap interval of the IQM.

    Evaluations fall a few episodes after each multiple of ``eval_every`` (a vector step ends several
    episodes at once), so each seed is interpolated onto an even grid with as many points as the
    shortest run has evaluations.
    """
    if len(runs) < 2:
        raise ValueError(f"need at least 2 seeds for an interval, got {len(runs)}")
    points = min(run.episodes.size for run in runs)
    grid = np.linspace(0.0, min(run.episodes[-1] for run in runs), points)
    per_seed = np.stack([np.interp(grid, run.episodes, run.returns) for run in runs])
    bands = [bootstrap_interval(per_seed[:, i], statistic=iqm, confidence=confidence) for i in range(points)]
    return Curve(grid, per_seed, iqm(per_seed, axis=0), np.array([b.low for b in bands]),
                 np.array([b.high for b in bands]))


def plot_learning_curve(curve: Curve, solution: Solution, title: str = "") -> plt.Figure:
    """Q-learning's exact return over training against the optimum, the myopic and the random policy.

    The right axis reads the same values as a percentage of ``V*``.
    """
    fig, ax = plt.subplots(figsize=(8, 4.5))
    v_star = solution.optimal_return
    for row in curve.per_seed:
        ax.plot(curve.episodes, row, color="tab:blue", alpha=0.2, linewidth=0.8)
    ax.fill_between(curve.episodes, curve.low, curve.high, color="tab:blue", alpha=0.25,
                    label="95% bootstrap interval of the IQM")
    ax.plot(curve.episodes, curve.iqm, color="tab:blue", linewidth=2,
            label=f"Q-learning, greedy policy (IQM of {curve.per_seed.shape[0]} seeds; thin: each seed)")
    lines = [("optimal policy, $V^*$", v_star, "black", "-"),
             ("myopic policy", solution.myopic_return, "tab:red", "--"),
             ("random policy", solution.random_return, "tab:gray", ":")]
    for label, value, color, style in lines:
        ax.axhline(value, color=color, linestyle=style, linewidth=1.5, label=f"{label}: {value:.1f}")
    ax.set(xlabel="training episodes", ylabel="average return per episode (exact)",
           title=title or "Tabular Q-learning on TabularDrift-v0 against the exact optimum",
           xlim=(0, curve.episodes[-1]), ylim=(0, 1.08 * v_star))
    right = ax.secondary_yaxis("right", functions=(lambda y: 100 * y / v_star, lambda p: p * v_star / 100))
    right.set_ylabel("% of $V^*$")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def disagreements(solution: Solution, policy: np.ndarray) -> list[dict[str, Any]]:
    """The live states where ``policy`` differs from the optimal policy, most costly first.

    Each row has the state, the two actions, the ``Q*`` gap ``V*(s) - Q*(s, policy(s))`` and the
    expected visits under ``policy``. Their products sum to the whole loss ``V*(s0) - V^policy(s0)``
    (the performance difference lemma), so a disagreement costs little when its gap is small or the
    state is rarely reached.
    """
    mdp, optimal = solution.mdp, solution.optimal_policy
    visits = state_visits(mdp, policy)
    rows = []
    for s in np.flatnonzero(policy[: mdp.terminal] != optimal[: mdp.terminal]):
        gap = float(solution.v_star[s] - solution.q_star[s, policy[s]])
        state = mdp.describe(int(s))
        rows.append({"state": int(s), "satiation": [float(x) for x in state["satiation"]], "budget": state["budget"],
                     "optimal": mdp.describe_action(int(optimal[s])), "learned": mdp.describe_action(int(policy[s])),
                     "q_gap": gap, "visits": float(visits[s]), "cost": gap * float(visits[s])})
    return sorted(rows, key=lambda row: -row["cost"])


def disagreement_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of ``disagreements`` rows."""
    lines = ["| state | satiation per topic | budget | optimal | learned | Q* gap | visits per episode | cost |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sat = ", ".join(f"{x:.2f}" for x in r["satiation"])
        lines.append(f"| {r['state']} | {sat} | {r['budget']:.0f} | {r['optimal']} | {r['learned']} | "
                     f"{r['q_gap']:.3f} | {r['visits']:.3f} | {r['cost']:.4f} |")
    return "\n".join(lines)


def summarize(solution: Solution, runs: list[SeedRun]) -> dict[str, Any]:
    """Per-seed and aggregate results (IQM with a 95% bootstrap interval, and the worst seed)."""
    def aggregate(values: np.ndarray) -> dict[str, float]:
        return {**asdict(bootstrap_interval(values, statistic=iqm)), "min": float(values.min())}

    fractions = np.array([run.fraction_of_optimum for run in runs])
    agreements = np.array([run.agreement for run in runs])
    return {
        "optimal_return": solution.optimal_return,
        "myopic_return": solution.myopic_return,
        "random_return": solution.random_return,
        "visited_states": visited_states(solution.mdp, solution.optimal_policy).tolist(),
        "seeds": [{"seed": run.seed, "final_return": run.final_return,
                   "fraction_of_optimum": run.fraction_of_optimum,
                   "fraction_ties_split": float(run.returns[-1] / solution.optimal_return), "agreement": run.agreement,
                   "disagreements": len(disagreements(solution, run.policy))} for run in runs],
        "fraction_of_optimum": aggregate(fractions),
        "agreement": aggregate(agreements),
    }


def report_markdown(cfg: TabularBenchConfig, summary: dict[str, Any]) -> str:
    """``results.md``: the setting, the reference values, and the per-seed and aggregate table."""
    frac, agree = summary["fraction_of_optimum"], summary["agreement"]
    v_star = summary["optimal_return"]
    last_seed = cfg.first_seed + cfg.seeds - 1
    lines = [f"# Tabular Q-learning on {ENV_ID}", ""]
    lines.append(f"{cfg.seeds} seeds ({cfg.first_seed}..{last_seed}), {cfg.episodes} training episodes each on "
                 f"{cfg.envs} parallel envs; every value below is exact (linear Bellman equations of the MDP).")
    lines += ["", "| policy | average return per episode | % of V* |", "|---|---|---|"]
    for name, key in (("optimal (value iteration)", "optimal_return"),
                      ("myopic (best expected immediate reward)", "myopic_return"),
                      ("uniformly random", "random_return")):
        lines.append(f"| {name} | {summary[key]:.2f} | {100 * summary[key] / v_star:.1f} |")
    lines += ["", (f"Agreement is measured on the {len(summary['visited_states'])} states the optimal policy "
                   f"visits (more than {VISIT_THRESHOLD} times per episode)."), ""]
    lines += [("| seed | final return | fraction of V* | same, ties split | agreement with the optimal policy "
               "| states that differ |"), "|---|---|---|---|---|---|"]
    for s in summary["seeds"]:
        lines.append(f"| {s['seed']} | {s['final_return']:.2f} | {s['fraction_of_optimum']:.3f} | "
                     f"{s['fraction_ties_split']:.3f} | {s['agreement']:.2f} | {s['disagreements']} |")
    lines.append(f"| IQM [95% CI] | | {frac['estimate']:.3f} [{frac['low']:.3f}, {frac['high']:.3f}] | | "
                 f"{agree['estimate']:.2f} [{agree['low']:.2f}, {agree['high']:.2f}] | |")
    lines.append(f"| worst seed | | {frac['min']:.3f} | | {agree['min']:.2f} | |")
    lines += ["", ("The final values are those of the greedy policy the agent acts with: ties, such as the all-zero "
                   "rows of states training never reached, go to the action the agent's seeded tie-break picks, "
                   "never a fixed one. \"Ties split\" values the same table with ties split uniformly, as the "
                   "curve does, so that an untrained table counts as the random policy; the two differ when "
                   "untrained states matter."),
              "", f"![Q-learning against the optimum]({PLOT_NAME}.png)", ""]
    return "\n".join(lines)


def run(cfg: TabularBenchConfig, progress: bool | None = None) -> dict[str, Any]:
    """Solve, train every seed, and write the plot and the results; returns the summary."""
    from benchmarks.plots import save_figure

    out = Path(cfg.out)
    solution = solve(make_env(1).envs[0].unwrapped.mdp)
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    runs = train_seeds(solution, seeds, cfg.episodes, cfg.envs, cfg.eval_every, progress)
    fig = plot_learning_curve(learning_curve(runs), solution)
    for suffix in ("svg", "png"):
        save_figure(fig, out / f"{PLOT_NAME}.{suffix}")
    summary = summarize(solution, runs)
    atomic_write_text(out / "results.md", report_markdown(cfg, summary))
    atomic_write_text(out / "results.json", json.dumps({"config": asdict(cfg), **summary}, indent=2))
    return summary


def parse_args(argv: list[str] | None) -> TabularBenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TabularBenchConfig()
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help="training seeds (>= 2)")
    parser.add_argument("--first-seed", type=int, default=defaults.first_seed, help="the seeds are consecutive from here")
    parser.add_argument("--episodes", type=int, default=defaults.episodes, help="training episodes per seed")
    parser.add_argument("--envs", type=int, default=defaults.envs, help="parallel envs Q-learning trains on")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every,
                        help="training episodes between exact evaluations of the greedy policy")
    parser.add_argument("--out", default=defaults.out, help="folder for the plot, results.md and results.json")
    args = parser.parse_args(argv)
    try:
        return TabularBenchConfig(**vars(args))
    except ValueError as err:
        name, rest = str(err).split("=", 1)
        parser.error(f"--{name.replace('_', '-')}={rest}")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    summary = run(cfg)
    frac, agree = summary["fraction_of_optimum"], summary["agreement"]
    print(f"V* = {summary['optimal_return']:.2f}, myopic {summary['myopic_return']:.2f}, "
          f"random {summary['random_return']:.2f}")
    print(f"Q-learning, {cfg.seeds} seeds: {frac['estimate']:.3f} of V* (IQM; worst seed {frac['min']:.3f}), "
          f"agreement with the optimal policy {agree['estimate']:.2f} (worst {agree['min']:.2f})")
    print(f"wrote {cfg.out}/results.md, results.json, {PLOT_NAME}.png and {PLOT_NAME}.svg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
