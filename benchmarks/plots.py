"""Figures. Each function takes plain data, draws with matplotlib's Agg backend and saves atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from agents.evaluation import UserTrace  # noqa: E402
from benchmarks.stats import Interval, bootstrap_interval, iqm  # noqa: E402
from recsim_env.io import atomic_write  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Save ``fig`` atomically (the format follows the suffix) and close it."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_user_drift(traces: dict[str, UserTrace], path: str | Path, title: str = "") -> Path:
    """The same user under several policies: interest and satiation per topic over time, and budget.

    One column per policy; rows are interest (blue = likes, red = dislikes), satiation (boredom)
    and the remaining budget with clicks marked.
    """
    n = len(traces)
    fig, axes = plt.subplots(3, n, figsize=(4.2 * n, 7.5), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 3, 2]}, sharey="row")
    longest = max(len(t.budget) for t in traces.values())
    for col, (name, trace) in enumerate(traces.items()):
        steps = np.arange(len(trace.budget))
        ax_i, ax_s, ax_b = axes[:, col]
        im_i = ax_i.imshow(trace.interest.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1,
                           extent=(-0.5, len(steps) - 0.5, trace.interest.shape[1] - 0.5, -0.5))
        ax_i.set(title=f"{name}: {trace.reward.sum():.0f} reward, {len(steps)} steps", ylabel="topic" if col == 0 else "")
        im_s = ax_s.imshow(trace.satiation.T, aspect="auto", cmap="Oranges", vmin=0, vmax=1,
                           extent=(-0.5, len(steps) - 0.5, trace.satiation.shape[1] - 0.5, -0.5))
        ax_s.set(ylabel="topic" if col == 0 else "")
        ax_b.plot(steps, trace.budget, color="tab:green", label="budget")
        ax_b.plot(steps[trace.click], trace.budget[trace.click], "k.", markersize=4, label="click")
        ax_b.set(xlabel="step", ylabel="budget" if col == 0 else "")
        for ax in (ax_i, ax_s, ax_b):
            ax.set_xlim(-0.5, longest - 0.5)
    axes[2, 0].legend(loc="upper right", fontsize=8)
    fig.colorbar(im_i, ax=list(axes[0]), label="interest", fraction=0.02)
    fig.colorbar(im_s, ax=list(axes[1]), label="satiation", fraction=0.02)
    fig.suptitle(title or "One simulated user under each policy")
    path = Path(path)
    return save_png_svg(fig, path.parent, path.stem)


#: One colour per agent, the same in every figure of the suite.
AGENT_COLORS = {
    "random": "#9e9e9e", "popularity": "#8c564b", "myopic": "#ff7f0e", "heuristic": "#2ca02c", "planner": "#000000",
    "qlearning": "#bcbd22", "dqn": "#1f77b4", "dqn_myopic": "#d62728", "sb3_dqn": "#9467bd", "lstm": "#e377c2",
    "gcn": "#17becf", "transformer": "#7b4173", "dqn_gru": "#6baed6", "dqn_transformer": "#08306b",
    "cql": "#637939", "bcq": "#8c6d31", "bc": "#843c39", "slateq": "#e7969c", "sb3_ppo": "#6b6ecf",
}


def agent_color(agent: str) -> str:
    return AGENT_COLORS.get(agent, "#333333")


def save_png_svg(fig: plt.Figure, out: str | Path, stem: str) -> Path:
    """Save ``fig`` as ``stem.png`` and ``stem.svg`` in ``out`` (atomically); returns the PNG path."""
    out = Path(out)
    for suffix in (".png", ".svg"):
        path = out / f"{stem}{suffix}"
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=suffix[1:], dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return out / f"{stem}.png"


def _interval_bars(ax: plt.Axes, intervals: dict[str, Interval], xlabel: str) -> None:
    """Horizontal bars: the estimate, with its interval as an error bar; first agent on top."""
    names = list(intervals)
    y = np.arange(len(names))[::-1]
    est = np.array([intervals[n].estimate for n in names])
    err = np.array([[intervals[n].estimate - intervals[n].low, intervals[n].high - intervals[n].estimate]
                    for n in names]).T
    ax.barh(y, est, color=[agent_color(n) for n in names], alpha=0.85)
    ax.errorbar(est, y, xerr=np.maximum(err, 0), fmt="none", ecolor="black", capsize=3, lw=1)
    ax.set_yticks(y, names)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def plot_learning_curves(curves: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]],
                         references: dict[str, dict[str, float]], out: str | Path) -> Path:
    """Training-episode return against training episodes, per preset: IQM over seeds with a 95%
    bootstrap band; dashed lines are the evaluated returns of the fixed policies."""
    presets = list(curves)
    fig, axes = plt.subplots(1, len(presets), figsize=(6.5 * len(presets), 4.5), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        for agent, runs in curves[preset].items():
            runs = [(np.asarray(x), np.asarray(y)) for x, y in runs if len(x) > 1]
            if not runs:
                continue
            grid = np.geomspace(max(min(x[0] for x, _ in runs), 1), min(x[-1] for x, _ in runs), 40)
            values = np.array([np.interp(np.log(grid), np.log(x), y) for x, y in runs])
            bands = [bootstrap_interval(v, iqm) if len(v) > 1 else Interval(v[0], v[0], v[0]) for v in values.T]
            color = agent_color(agent)
            ax.plot(grid, [b.estimate for b in bands], color=color, label=agent, lw=2)
            ax.fill_between(grid, [b.low for b in bands], [b.high for b in bands], color=color, alpha=0.2)
        for agent, value in references.get(preset, {}).items():
            ax.axhline(value, color=agent_color(agent), ls="--", lw=1.2, label=f"{agent} (evaluated)")
        ax.set(xscale="log", xlabel="training episodes (in the order they began)", ylabel="return per training episode",
               title=f"Learning curves: {preset}")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
    legend: dict[str, Any] = {}  # one legend beside the panels, where it hides no curve
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), fontsize=8, loc="center left",
               bbox_to_anchor=(fig.subplotpars.right + 0.01, 0.5))
    fig.suptitle("Long-term reward while training (exploration included); IQM over seeds, 95% band")
    return save_png_svg(fig, out, "learning_curves")


def plot_final_return(summary: dict[str, dict[str, Interval]], out: str | Path) -> Path:
    """Evaluated long-term reward per agent and preset: IQM over seeds with 95% intervals."""
    presets = list(summary)
    n = max(len(v) for v in summary.values())
    fig, axes = plt.subplots(1, len(presets), figsize=(6 * len(presets), 0.45 * n + 1.5), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        _interval_bars(ax, summary[preset], "total reward per held-out user (IQM over seeds)")
        ax.set_title(preset)
    fig.suptitle("Final long-term reward per agent (95% CI, seeds and users resampled)")
    return save_png_svg(fig, out, "final_return")


def plot_accuracy(panels: dict[str, dict[str, Interval]], out: str | Path) -> Path:
    """One panel per accuracy metric, agents as bars with their intervals."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.45 * max(map(len, panels.values())) + 1.5),
                             squeeze=False)
    for ax, (metric, intervals) in zip(axes[0], panels.items()):
        _interval_bars(ax, intervals, metric)
        ax.set_title(metric)
    fig.suptitle("Accuracy per agent (IQM over seeds, 95% CI)")
    return save_png_svg(fig, out, "accuracy")


def _label_points(ax: plt.Axes, points: list[tuple[str, float, float]], fontsize: float = 9) -> None:
    """Name each point to its right, moving a name down (with a leader line) until it overlaps no
    name placed before it; text boxes are estimated from the font size, in points."""
    ax.autoscale_view()
    scale = 72 / ax.figure.dpi  # display pixels -> points
    height, placed = 1.25 * fontsize, []
    for name, x, y in sorted(points, key=lambda p: -p[2]):
        px, py = ax.transData.transform((x, y)) * scale
        width, dy = 0.6 * fontsize * len(name), 4.0
        while any(px + 6 < x1 and x0 < px + 6 + width and py + dy < y1 and y0 < py + dy + height
                  for x0, y0, x1, y1 in placed):
            dy -= height
        placed.append((px + 6, py + dy, px + 6 + width, py + dy + height))
        leader = {"arrowstyle": "-", "lw": 0.6, "color": "0.5"} if dy < 4.0 else None
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, dy), fontsize=fontsize, arrowprops=leader)


def plot_accuracy_vs_return(panels: dict[str, dict[str, Interval]], reward: dict[str, Interval],
                            out: str | Path) -> Path:
    """One point per agent and panel: how well it predicts the click against how much it earns over time.

    ``panels`` maps an accuracy measure's label to its intervals per agent; agents without the measure
    are left out of that panel.
    """
    panels = {label: acc for label, acc in panels.items() if acc}
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(7 * max(len(panels), 1), 5.5), squeeze=False,
                             sharey=True)
    for ax, (label, accuracy) in zip(axes[0], panels.items()):
        points = []
        for agent in accuracy:
            if agent not in reward or not np.isfinite(accuracy[agent].estimate):
                continue
            x, y = accuracy[agent], reward[agent]
            ax.errorbar(x.estimate, y.estimate, xerr=[[x.estimate - x.low], [x.high - x.estimate]],
                        yerr=[[y.estimate - y.low], [y.high - y.estimate]], fmt="o", color=agent_color(agent),
                        ms=8, capsize=3)
            points.append((agent, x.estimate, y.estimate))
        _label_points(ax, points)
        ax.set(xlabel=label, title=label)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("long-term reward per user (IQM over seeds)")
    fig.suptitle("Predicting the next click is not keeping the user")
    return save_png_svg(fig, out, "accuracy_vs_return")


def plot_sessions(per_user: dict[str, dict[str, np.ndarray]], out: str | Path) -> Path:
    """Session length per user (box plots) and retention: the share of users still there after t steps."""
    agents_ = list(per_user)
    fig, (ax_box, ax_surv) = plt.subplots(1, 2, figsize=(13, 4.8))
    lengths = [np.asarray(per_user[a]["session_length"]) for a in agents_]
    box = ax_box.boxplot(lengths, orientation="horizontal", patch_artist=True, showfliers=False)
    for patch, agent in zip(box["boxes"], agents_):
        patch.set_facecolor(agent_color(agent))
        patch.set_alpha(0.7)
    ax_box.set_yticks(np.arange(1, len(agents_) + 1), agents_)
    ax_box.invert_yaxis()
    ax_box.set(xlabel="steps per session", title="Session length per user")
    ax_box.grid(axis="x", alpha=0.3)
    for agent in agents_:
        steps = np.sort(np.asarray(per_user[agent]["episode_length"]))
        t = np.arange(0, steps.max() + 1)
        ax_surv.plot(t, 1.0 - np.searchsorted(steps, t, side="right") / steps.size, color=agent_color(agent),
                     label=agent, lw=1.8)
    ax_surv.set(xlabel="step of the episode", ylabel="share of users still active", title="Retention", ylim=(0, 1.02))
    ax_surv.grid(alpha=0.3)
    ax_surv.legend(fontsize=8)
    fig.suptitle("How long users stay (held-out users, all seeds pooled)")
    return save_png_svg(fig, out, "sessions")
