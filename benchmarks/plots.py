"""Figures. Each function takes plain data, draws with matplotlib's Agg backend and saves atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from agents.evaluation import UserTrace  # noqa: E402
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
    return save_figure(fig, path)
