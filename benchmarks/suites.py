"""Named benchmark suites: which agents run on which presets, over which seeds, with what budget.

A suite expands into :class:`RunSpec` s, one per (agent, preset, seed). A run is a pure function of
its spec (see :mod:`benchmarks.runner`), so it can execute anywhere (a local process, a Ray
worker) and give the same numbers, and a finished run is never redone while its spec is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from recsim_env.config import Validated, bounded

#: The registered env behind each preset the suite runs on.
PRESET_ENVS = {
    "default": "recsim_env/InterestDrift-v0",
    "cross_session": "recsim_env/CrossSessionDrift-v0",
    "slate": "recsim_env/SlateDrift-v0",
}

#: Every agent the suite knows, in the order tables and plots show them.
AGENTS = ("random", "popularity", "myopic", "heuristic", "planner", "qlearning", "dqn", "dqn_myopic", "sb3_dqn",
          "dqn_gru", "dqn_transformer", "cql", "bcq", "bc", "lstm", "gcn", "transformer", "slateq", "sb3_ppo")
#: The agents of the one-item presets' suites: all but the two that came with slates.
ONE_ITEM_AGENTS = tuple(a for a in AGENTS if a not in ("slateq", "sb3_ppo"))
#: Agents that show a slate; the others choose one candidate, so they run on the one-item presets only
#: (SlateQ only on slates: on one item it is a DQN with a click model).
SLATE_AGENTS = ("random", "popularity", "myopic", "heuristic", "slateq", "sb3_ppo")
#: Presets whose action is a slate.
SLATE_PRESETS = frozenset({"slate"})
#: Agents trained on a simulated interaction log rather than by interacting.
LOG_TRAINED = frozenset({"popularity", "lstm", "gcn", "transformer"})
#: Offline RL agents (``agents.offline``): trained on a propensity log of other users alone, never stepping an env.
OFFLINE = frozenset({"cql", "bcq", "bc"})
#: The DQN with another user encoder (``agents.q_networks.ENCODERS``); everything else as ``dqn``.
DQN_ENCODERS = {"dqn_gru": "gru", "dqn_transformer": "transformer"}
#: Agents that learn from the environment (by interacting, or from a log of it): they share one budget.
LEARNERS = frozenset({"qlearning", "dqn", "dqn_myopic", "sb3_dqn", "slateq", "sb3_ppo", *DQN_ENCODERS}) \
    | LOG_TRAINED | OFFLINE
#: The quick suite's agents: the one-item agents but the offline ones, the DQN's other encoders and the
#: transformer next-item model, which would take it past 10 minutes on 2 cores (a 500,000-step run on one
#: core, in DQN runs: CQL 1.0, BCQ 1.6, BC 0.8, the GRU encoder 4.4, the transformer 7.0; 5 seeds add
#: about 3 and 10 minutes).
QUICK_AGENTS = tuple(a for a in ONE_ITEM_AGENTS if a not in OFFLINE and a not in DQN_ENCODERS and a != "transformer")
#: Behaviour policies a log may come from.
LOG_POLICIES = ("random", "myopic", "heuristic")

#: Per preset, settings that differ from an agent's defaults. On the cross-session preset the DQN and
#: the offline learners value each session on its own (``session_discount=0``): the days a user stays
#: away are no steps, and a per-step discount alone makes short sessions look free (see
#: ``agents.dqn.DQNConfig``).
AGENT_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    (agent, "cross_session"): {"session_discount": 0.0} for agent in ("dqn", *DQN_ENCODERS, *OFFLINE)
}


@dataclass(frozen=True)
class Budget(Validated):
    """How much every run trains and evaluates; one budget per suite.

    Every learner gets ``train_steps`` environment user-steps: the interacting ones step that many
    users in total, the next-item models are fitted on a log of that many steps (whole episodes of
    ``log_policy``), and the offline RL agents on a propensity log of that many steps (whole episodes
    of ``log_policy`` made epsilon-greedy with ``log_epsilon``, so that every candidate has a logged
    probability), on which they take ``offline_updates`` gradient updates.
    """

    eval_users: int = bounded(2000, ge=2, le=1_000_000, doc="held-out users every agent is evaluated on")
    train_steps: int = bounded(500_000, ge=1, le=10**10, doc="environment user-steps every learner trains on")
    train_users: int = bounded(256, ge=1, le=100_000, doc="users stepped together while training by interaction")
    log_policy: str = "myopic"
    seq_epochs: int = bounded(10, ge=1, le=10_000, doc="most epochs of the sequential models")
    accuracy_users: int = bounded(500, ge=2, le=1_000_000, doc="held-out users of the accuracy log")
    accuracy_policy: str = "myopic"
    max_steps: int = bounded(100_000, ge=1, le=10**9, doc="vector steps an evaluation may take")
    log_epsilon: float = bounded(0.3, gt=0.0, le=1.0, doc="offline agents' log: probability of a uniformly random "
                                 "candidate instead of log_policy's (above 0: every candidate is logged sometimes)")
    offline_updates: int = bounded(3000, ge=1, le=10**9, doc="gradient updates of the offline agents on their log")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("log_policy", "accuracy_policy"):
            if getattr(self, name) not in LOG_POLICIES:
                raise ValueError(f"Budget.{name}={getattr(self, name)!r} is not allowed: {', '.join(LOG_POLICIES)}")


#: ``--set`` overrides as hashable, sorted ``(field, value)`` pairs (a RunSpec is a dict key).
EnvOverrides = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class EnvChoice:
    """Which env the runs use: a preset's registered env, or any recsim_env id with config overrides and
    user modules (``--plugin``) that register agents. Workers import the plugins before building."""

    env: str | None = None
    overrides: EnvOverrides = ()
    plugins: tuple[str, ...] = ()

    def env_id(self, preset: str) -> str:
        return self.env or PRESET_ENVS[preset]

    @property
    def label(self) -> str:
        """The preset name that runs on a chosen env go by: the id without its namespace."""
        return (self.env or "").split("/")[-1]


@dataclass(frozen=True)
class RunSpec:
    """One agent on one preset with one seed: everything a worker needs to reproduce the run."""

    agent: str
    preset: str
    seed: int
    budget: Budget = field(default_factory=Budget)
    choice: EnvChoice = field(default_factory=EnvChoice)

    @property
    def run_id(self) -> str:
        return f"{self.preset}__{self.agent}__seed{self.seed}"

    @property
    def env_id(self) -> str:
        return self.choice.env_id(self.preset)

    def env_kwargs(self) -> dict[str, Any]:
        """The config overrides every env of the run is made with."""
        return dict(self.choice.overrides)

    @property
    def eval_seed(self) -> int:
        """Seed of the held-out users: the same for every agent of a seed, never used in training."""
        return 1_000_000 + self.seed

    @property
    def accuracy_seed(self) -> int:
        """Seed of the accuracy log's held-out users: the same for every agent of a seed, used nowhere else."""
        return 2_000_000 + self.seed

    @property
    def offline_log_seed(self) -> int:
        """Seed of the users in the offline agents' propensity log: their own stream, apart from every other."""
        return 3_000_000 + self.seed

    def overrides(self) -> dict[str, Any]:
        """Config fields that differ from the agent's defaults: its encoder, and the preset's settings."""
        encoder = {"encoder": DQN_ENCODERS[self.agent]} if self.agent in DQN_ENCODERS else {}
        return {**encoder, **AGENT_OVERRIDES.get((self.agent, self.preset), {})}


@dataclass(frozen=True)
class Suite:
    """Agents x presets x seeds under one budget (on a chosen env instead of the presets, with ``choice.env``)."""

    name: str
    agents: tuple[str, ...]
    presets: tuple[str, ...]
    seeds: tuple[int, ...]
    budget: Budget
    choice: EnvChoice = field(default_factory=EnvChoice)

    def __post_init__(self) -> None:
        known = AGENTS + tuple(a for a in registered_agents() if a not in AGENTS)
        presets = (self.choice.label,) if self.choice.env else tuple(PRESET_ENVS)
        for kind, values, allowed in (("agent", self.agents, known), ("preset", self.presets, presets)):
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"unknown {kind} {unknown}; allowed: {', '.join(allowed)}")
        if not self.choice.env:
            for agent in self.agents:
                if not any(acts_on(agent, p) for p in self.presets):
                    raise ValueError(f"agent {agent!r} cannot act on preset(s) {', '.join(self.presets)}: "
                                     f"{_unsupported(agent)}")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds={self.seeds} must be distinct non-negative integers, at least one")

    def runs(self) -> list[RunSpec]:
        """Every (agent, preset, seed) whose agent can act on the preset."""
        return [RunSpec(a, p, s, self.budget, self.choice) for p in self.presets for a in self.agents
                if self.choice.env or acts_on(a, p) for s in self.seeds]

    def restrict(self, agents: tuple[str, ...] | None = None, presets: tuple[str, ...] | None = None,
                 seeds: tuple[int, ...] | None = None) -> Suite:
        """The same suite on a subset (or another set) of agents, presets or seeds."""
        return replace(self, agents=agents or self.agents, presets=presets or self.presets, seeds=seeds or self.seeds)

    def on(self, choice: EnvChoice) -> Suite:
        """The same suite on a chosen env (one preset, named after it) instead of its presets."""
        return replace(self, presets=(choice.label,) if choice.env else self.presets, choice=choice)


def acts_on(agent: str, preset: str) -> bool:
    """Whether the suite runs ``agent`` on ``preset``: slate agents on slates, one-item agents on the others
    (a plugin's agent anywhere: its own constructor says what it refuses)."""
    if agent not in AGENTS:
        return True
    if preset in SLATE_PRESETS:
        return agent in SLATE_AGENTS
    return agent != "slateq"


def _unsupported(agent: str) -> str:
    if agent == "slateq":
        return f"it shows slates; slate presets: {', '.join(sorted(SLATE_PRESETS))}"
    return f"it shows one item; agents for slates: {', '.join(SLATE_AGENTS)}"


def registered_agents() -> list[str]:
    """Every name in the agents registry (plugins included once imported)."""
    import agents

    return agents.names()


SUITES: dict[str, Suite] = {
    # the README's main job: the references and the main learners, 5 seeds, within 10 minutes on 2 cores
    # (the next-item models' epochs are cut to fit: each epoch passes over the whole 500k-step log)
    "quick": Suite("quick", QUICK_AGENTS, ("default",), (0, 1, 2, 3, 4), Budget(seq_epochs=3)),
    # offline RL from a propensity log of the quick budget, beside the references and the online DQN
    "offline": Suite("offline", ("random", "myopic", "heuristic", "dqn", "cql", "bcq", "bc"), ("default",),
                     (0, 1, 2, 3, 4), Budget(seq_epochs=3)),
    # the DQN's user encoders (MLP, GRU, transformer over the history) at the quick budget
    "encoders": Suite("encoders", ("random", "heuristic", "dqn", "dqn_gru", "dqn_transformer"), ("default",),
                      (0, 1, 2, 3, 4), Budget(seq_epochs=3)),
    # the slate preset at the quick budget: SlateQ and SB3's PPO against the slate-aware references
    "slates": Suite("slates", SLATE_AGENTS, ("slate",), (0, 1, 2, 3, 4), Budget(seq_epochs=3)),
    # the published comparison: every agent on every preset, twice the training budget (and the offline
    # agents twice the updates, as the DQN takes twice the gradient steps)
    "full": Suite("full", AGENTS, ("default", "cross_session", "slate"), (0, 1, 2, 3, 4),
                  Budget(train_steps=1_000_000, seq_epochs=20, offline_updates=6000)),
    # seconds-long end-to-end check of the machinery (tests): numbers mean nothing
    "tiny": Suite("tiny", ONE_ITEM_AGENTS, ("default",), (0, 1),
                  Budget(eval_users=16, train_steps=2_000, train_users=16, seq_epochs=1, accuracy_users=16,
                         offline_updates=50)),
    "tiny_slates": Suite("tiny_slates", SLATE_AGENTS, ("slate",), (0, 1),
                         Budget(eval_users=16, train_steps=2_000, train_users=16, seq_epochs=1, accuracy_users=16)),
}
