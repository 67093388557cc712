"""The sentences of a report, computed from the run's numbers: who wins, by how much, and why users left.

Nothing here is fixed text about results: every claim is derived from the summaries it is given, so
swapping two agents' numbers swaps what the sentences say (tested).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from agents.evaluation import UserTrace
from benchmarks.stats import Interval
from benchmarks.summary import Results, normalized_scores, summary
from benchmarks.suites import Suite


def _v(interval: Interval, decimals: int = 1) -> str:
    return f"{interval.estimate:.{decimals}f} [{interval.low:.{decimals}f}, {interval.high:.{decimals}f}]"


def versus(a: Interval, b: Interval) -> str:
    """How ``a`` stands against ``b``: ahead or behind, and whether their intervals are apart."""
    if a.low > b.high:
        return "ahead, with intervals apart"
    if a.high < b.low:
        return "behind, with intervals apart"
    return ("ahead" if a.estimate > b.estimate else "behind") + ", but the intervals overlap"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _rank(values: dict[str, Interval], name: str) -> int:
    """1 for the highest estimate."""
    return 1 + sum(v.estimate > values[name].estimate for v in values.values())


def headline(results: Results, suite: Suite, preset: str) -> list[str]:
    """The findings of one preset, each a sentence computed from the summaries."""
    returns = summary(results, suite, "return").get(preset, {})
    if not returns:
        return ["No run of this preset finished."]
    sentences = []
    best = max(returns, key=lambda a: returns[a].estimate)
    sentences.append(f"The highest return is {best}'s, {_v(returns[best])} per user.")
    if "planner" in returns and "heuristic" in returns:
        sentences.append(f"The planner ({_v(returns['planner'])}) is {versus(returns['planner'], returns['heuristic'])}"
                         f" against the one-step heuristic ({_v(returns['heuristic'])}).")
    sentences += _equal_budget(returns, suite)
    normalized = normalized_scores(results, suite).get(preset, {})
    learners = {a: v for a, v in normalized.items() if a not in ("random", "planner", "myopic", "heuristic")}
    if "dqn" in normalized:
        top = max(learners, key=lambda a: learners[a].estimate)
        sentences.append(f"On the normalized scale (0 = random, 1 = planner) DQN sits at {_v(normalized['dqn'], 2)}; "
                         f"the best learner is {top} at {normalized[top].estimate:.2f}.")
    tension = tension_caption(summary(results, suite, "log_HR@10").get(preset, {}), returns)
    if tension:
        sentences.append(tension)
    return sentences


#: Equal-budget comparisons: a learner against the baselines trained on as many user-steps.
EQUAL_BUDGET = (("dqn", ("sb3_dqn", "dqn_myopic")), ("slateq", ("sb3_ppo",)))
_DISPLAY = {"dqn": "DQN", "slateq": "SlateQ"}


def _equal_budget(returns: dict[str, Interval], suite: Suite) -> list[str]:
    sentences = []
    for learner, baselines in EQUAL_BUDGET:
        present = [a for a in baselines if a in returns]
        if learner not in returns or not present:
            continue
        listed = ", ".join(f"{a} {_v(returns[a])}" for a in (learner, *present))
        ratios = "; ".join(f"{_DISPLAY[learner]} is {returns[learner].estimate / returns[a].estimate:.2f}x {a} "
                           f"({versus(returns[learner], returns[a])})" for a in present)
        sentences.append(f"At equal budgets ({suite.budget.train_steps:,} user-steps each): {listed}. {ratios}.")
    return sentences


def tension_caption(accuracy: dict[str, Interval], returns: dict[str, Interval]) -> str:
    """Where the most accurate agent ranks on return, and how accuracy and return correlate."""
    both = [a for a in accuracy if a in returns]
    if len(both) < 3:
        return ""
    acc = {a: accuracy[a] for a in both}
    ret = {a: returns[a] for a in both}
    most_accurate = max(both, key=lambda a: acc[a].estimate)
    longest = max(both, key=lambda a: ret[a].estimate)
    rho = spearmanr([acc[a].estimate for a in both], [ret[a].estimate for a in both]).statistic
    return (f"The most accurate agent on the held-out log (HR@10 {acc[most_accurate].estimate:.4f}) is "
            f"{most_accurate}, {_ordinal(_rank(ret, most_accurate))} of {len(both)} on return; the agent with the "
            f"highest return among those that rank the catalogue, {longest}, is {_ordinal(_rank(acc, longest))} "
            f"on accuracy. Spearman correlation of accuracy and return across these {len(both)} agents: "
            f"{rho:+.2f}.")


def return_caption(returns: dict[str, Interval], preset: str) -> str:
    if not returns:
        return "Final long-term reward per agent, evaluated on held-out users."
    order = sorted(returns, key=lambda a: -returns[a].estimate)
    return (f"Final long-term reward per agent on {preset}, evaluated on held-out users (IQM, 95% CI over seeds "
            f"and users). Highest: {order[0]} ({returns[order[0]].estimate:.1f}); lowest: {order[-1]} "
            f"({returns[order[-1]].estimate:.1f}).")


def accuracy_caption(hr: dict[str, Interval], policy: str) -> str:
    text = ("Accuracy per agent: catalogue-wide HR@10 and NDCG@10 against the clicked item at every logged step "
            f"of held-out users under the {policy} policy, click ROC-AUC on the logged impressions, and next-click "
            "NDCG@10 over the step's candidates in each agent's own rollouts.")
    if hr:
        best = max(hr, key=lambda a: hr[a].estimate)
        text += f" Best HR@10: {best} ({hr[best].estimate:.4f})"
        text += f"; random: {hr['random'].estimate:.4f}." if "random" in hr else "."
    return text


def curves_caption(curves: dict[str, dict[str, list]]) -> str:
    """Where each learner's training return started and ended (IQM over seeds of the first and last bin)."""
    moves = []
    for preset, by_agent in curves.items():
        for agent, runs in by_agent.items():
            first = np.median([y[0] for _, y in runs])
            last = np.median([y[-1] for _, y in runs])
            moves.append(f"{agent} {first:.1f} -> {last:.1f}" + (f" ({preset})" if len(curves) > 1 else ""))
    return ("Learning curves: return of training episodes (with exploration) in the order they began; dashed lines "
            "are the fixed policies' evaluated returns. Median over seeds of the first and last bin: "
            + "; ".join(moves) + ".")


def _why(trace: UserTrace) -> str:
    if trace.reason == "budget":
        return "left when the time budget ran out"
    if trace.reason == "hazard":
        return (f"left on the leaving hazard with {trace.final_budget:.1f} budget to spare "
                f"(top boredom {trace.final_boredom:.2f})")
    return "was still there at the time limit"


def trace_caption(traces: dict[str, UserTrace]) -> str:
    """What happened to the traced user under each policy, and why they left."""
    parts = [f"under {name} the user earned {t.reward.sum():.0f} over {len(t.reward)} steps"
             + (f" and {int(t.session[-1]) + 1} sessions" if t.session[-1] > 0 else "") + f" and {_why(t)}"
             for name, t in traces.items()]
    text = "; ".join(parts)
    return ("One held-out user under each policy: interest (top), boredom (middle), budget (bottom). "
            + text[:1].upper() + text[1:] + ".")


def sessions_caption(per_user: dict[str, dict[str, np.ndarray]]) -> str:
    if not per_user:
        return "Session length per user, and retention."
    medians = {a: float(np.median(d["session_length"])) for a, d in per_user.items()}
    longest, shortest = max(medians, key=medians.get), min(medians, key=medians.get)
    return (f"Session length per user, and retention: the share of users still active after t steps. Median "
            f"session: longest under {longest} ({medians[longest]:.0f} steps), shortest under {shortest} "
            f"({medians[shortest]:.0f}).")
