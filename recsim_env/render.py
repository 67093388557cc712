"""Headless pictures of one user: top interests, satiation, budget, the slate and the choice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim_env.simulator import Simulator, StepOutcome


@dataclass(frozen=True)
class UserView:
    """Everything a render shows, copied out of the simulator for one user."""

    interest: np.ndarray
    satiation: np.ndarray
    budget: float
    max_budget: float
    session: int
    day: float
    slate: np.ndarray | None
    appeal: np.ndarray | None
    quality: np.ndarray | None
    topic: np.ndarray | None
    position: int
    engagement: float

    @classmethod
    def capture(cls, sim: Simulator, last: StepOutcome | None, user: int) -> UserView:
        st, cat = sim.state, sim.catalog
        slate = None if last is None else last.slate[user].copy()
        return cls(
            interest=st.interest[user].copy(), satiation=st.satiation[user].copy(),
            budget=float(st.budget[user]), max_budget=sim.config.user.max_budget,
            session=int(st.session[user]), day=float(st.day[user]), slate=slate,
            appeal=None if slate is None else cat.appeal[slate], quality=None if slate is None else cat.quality[slate],
            topic=None if slate is None else cat.topic[slate],
            position=-1 if last is None else int(last.position[user]),
            engagement=0.0 if last is None else float(last.engagement[user]),
        )

    def ansi(self, top: int = 3) -> str:
        """A few lines of text for a terminal."""
        order = np.argsort(-self.interest)[:top]
        bar = lambda x, width=20: "#" * int(round(np.clip(x, 0, 1) * width))  # noqa: E731
        lines = [f"session {self.session}  day {self.day:.1f}  budget {self.budget:6.1f}/{self.max_budget:.0f} "
                 f"|{bar(self.budget / self.max_budget):<20}|",
                 "top interests: " + ", ".join(f"topic {t} {self.interest[t]:+.2f}" for t in order),
                 "satiation:     " + ", ".join(f"topic {t} {self.satiation[t]:.2f}" for t in order)]
        if self.slate is None:
            lines.append("slate: (none yet)")
        else:
            for pos, item in enumerate(self.slate):
                mark = "->" if pos == self.position else "  "
                lines.append(f"{mark} [{pos}] item {item:6d} topic {self.topic[pos]:2d} "
                             f"appeal {self.appeal[pos]:.2f} quality {self.quality[pos]:+.2f}")
            lines.append(f"choice: {'no click' if self.position < 0 else f'position {self.position}'}"
                         f", engagement {self.engagement:.2f}")
        return "\n".join(lines) + "\n"

    def rgb_array(self) -> np.ndarray:
        """An RGB image ``(H, W, 3)`` uint8, drawn with matplotlib's Agg backend (no display needed)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.0), dpi=80)
        canvas = FigureCanvasAgg(fig)
        topics = np.arange(self.interest.size)
        ax_i, ax_s = fig.add_subplot(2, 2, 1), fig.add_subplot(2, 2, 3)
        ax_i.bar(topics, self.interest, color=np.where(self.interest >= 0, "tab:blue", "tab:red"))
        ax_i.set(ylim=(-1, 1), title="interest per topic")
        ax_s.bar(topics, self.satiation, color="tab:orange")
        ax_s.set(ylim=(0, 1), title="satiation per topic", xlabel="topic")
        ax_b = fig.add_subplot(2, 2, 2)
        ax_b.barh([0], [self.budget], color="tab:green")
        ax_b.set(xlim=(0, self.max_budget), yticks=[], title=f"budget (session {self.session}, day {self.day:.1f})")
        ax_t = fig.add_subplot(2, 2, 4)
        ax_t.axis("off")
        if self.slate is not None:
            rows = [[f"{'>' if p == self.position else ''}{p}", str(self.topic[p]), f"{self.appeal[p]:.2f}",
                     f"{self.quality[p]:+.2f}"] for p in range(self.slate.size)][:8]
            ax_t.table(cellText=rows, colLabels=["pos", "topic", "appeal", "quality"], loc="center")
            ax_t.set_title("no click" if self.position < 0 else f"clicked position {self.position}")
        fig.tight_layout()
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
