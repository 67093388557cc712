"""Typed, validated configuration for every simulator component, and the named presets.

Each component has one frozen dataclass. Every numeric field declares its allowed range once (in
the field's metadata), so validation and the error message come from the same place. Field names
are unique across components, which lets ``gymnasium.make(id, **overrides)`` route a flat keyword
such as ``n_items=5000`` to the component that owns it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

RewardFn = Callable[[dict[str, np.ndarray]], np.ndarray]


def bounded(default: float, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, doc: str = "") -> Any:
    """A dataclass field whose value must lie in the given interval."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "doc": doc})


def _describe_range(meta: Mapping[str, Any]) -> str:
    lo = f"[{meta['ge']}" if meta["ge"] is not None else f"({meta['gt']}" if meta["gt"] is not None else "(-inf"
    hi = f"{meta['le']}]" if meta["le"] is not None else f"{meta['lt']})" if meta["lt"] is not None else "inf)"
    return f"{lo}, {hi}"


_COMPONENT_TYPES: dict[str, type] = {}  # filled below, once the component classes exist


class Validated:
    """Mixin for frozen config dataclasses: checks every field in ``__post_init__`` and names the offender."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            name = f"{type(self).__name__}.{f.name}"
            if isinstance(f.default, bool) and not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {value!r}")
            if f.name in _COMPONENT_TYPES and not isinstance(value, _COMPONENT_TYPES[f.name]):
                raise TypeError(f"{name} must be a {_COMPONENT_TYPES[f.name].__name__}, got {value!r}")
            meta = f.metadata
            if not meta or not any(meta.get(k) is not None for k in ("ge", "gt", "le", "lt")):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if isinstance(f.default, int) and math.isfinite(value):
                if int(value) != value:
                    raise TypeError(f"{name} must be an integer, got {value!r}")
                object.__setattr__(self, f.name, int(value))
            elif not isinstance(f.default, int):
                object.__setattr__(self, f.name, float(value))
            value = getattr(self, f.name)
            ok = math.isfinite(value)
            ok = ok and (meta["ge"] is None or value >= meta["ge"]) and (meta["gt"] is None or value > meta["gt"])
            ok = ok and (meta["le"] is None or value <= meta["le"]) and (meta["lt"] is None or value < meta["lt"])
            if not ok:
                raise ValueError(f"{name}={value!r} is out of range: allowed {_describe_range(meta)}")


@dataclass(frozen=True)
class CatalogConfig(Validated):
    """The item catalogue: how many items, how many topics, how much clickbait."""

    n_items: int = bounded(1000, ge=100, le=100_000, doc="number of items in the catalogue")
    n_topics: int = bounded(10, ge=2, le=50, doc="number of topics (dimension of item features)")
    topic_purity: float = bounded(0.8, ge=0.0, le=1.0, doc="weight of an item's main topic in its mixture")
    clickbait_fraction: float = bounded(0.3, ge=0.0, le=0.9, doc="share of items with high appeal, low quality")
    mean_length: float = bounded(4.0, gt=0.0, le=100.0, doc="mean item length (time units)")
    quality_signal_noise: float = bounded(0.3, ge=0.0, le=5.0, doc="noise of the observable quality score")
    catalog_seed: int = bounded(0, ge=0, le=2**32 - 1, doc="seed of the catalogue (fixed across episodes)")


@dataclass(frozen=True)
class UserConfig(Validated):
    """The user population and the dynamics of its hidden state."""

    initial_budget: float = bounded(40.0, gt=0.0, le=10_000.0, doc="time budget at the start of a session")
    max_budget: float = bounded(80.0, gt=0.0, le=10_000.0, doc="the budget never exceeds this")
    volatile_fraction: float = bounded(0.3, ge=0.0, le=1.0, doc="share of users in the volatile segment")
    stable_drift_rate: float = bounded(0.05, ge=0.0, le=1.0, doc="how far a stable user's interest moves per click")
    volatile_drift_rate: float = bounded(0.25, ge=0.0, le=1.0, doc="same, for a volatile user")
    exogenous_drift: float = bounded(0.01, ge=0.0, le=1.0, doc="std of the per-step interest random walk")
    satiation_gain: float = bounded(0.3, ge=0.0, le=1.0, doc="share of the gap to 1 a click closes on its topics")
    satiation_decay: float = bounded(0.9, ge=0.0, le=1.0, doc="per-step factor on every topic's satiation")
    step_cost: float = bounded(1.0, gt=0.0, le=100.0, doc="budget every recommendation costs (browsing time)")
    refill_rate: float = bounded(7.0, ge=0.0, le=100.0, doc="budget gained per unit of quality consumed")
    hazard_base: float = bounded(0.005, gt=0.0, le=1.0, doc="per-step leaving probability of a fresh user")
    hazard_boredom: float = bounded(0.05, ge=0.0, le=1.0, doc="extra leaving probability at full boredom")

    def __post_init__(self) -> None:
        super().__post_init__()
        # The hazard at full boredom is a probability; beyond 1 it would be clipped silently.
        if self.hazard_base + self.hazard_boredom > 1.0:
            raise ValueError(f"UserConfig.hazard_base + UserConfig.hazard_boredom = {self.hazard_base} + "
                             f"{self.hazard_boredom} = {self.hazard_base + self.hazard_boredom!r} is out of range: "
                             "allowed (0.0, 1.0] (the leaving probability at full boredom)")


@dataclass(frozen=True)
class ChoiceConfig(Validated):
    """How a user picks among the shown items (or nothing)."""

    choice_model: Literal["logit", "cascade"] = "logit"
    click_interest_weight: float = bounded(3.0, ge=0.0, le=50.0, doc="logit weight of interest match")
    click_appeal_weight: float = bounded(3.0, ge=0.0, le=50.0, doc="logit weight of item appeal")
    click_satiation_weight: float = bounded(2.0, ge=0.0, le=50.0, doc="logit penalty of satiation")
    no_click_score: float = bounded(1.5, ge=-50.0, le=50.0, doc="logit score of choosing nothing")
    position_decay: float = bounded(0.8, gt=0.0, le=1.0, doc="attention factor per slate position")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.choice_model not in ("logit", "cascade"):
            raise ValueError(f"ChoiceConfig.choice_model={self.choice_model!r}: allowed 'logit', 'cascade'")


@dataclass(frozen=True)
class ResponseConfig(Validated):
    """How long a user engages with a clicked item, and how satisfied they are."""

    watch_quality_weight: float = bounded(2.5, ge=0.0, le=50.0, doc="effect of quality on watch fraction")
    watch_interest_weight: float = bounded(1.5, ge=0.0, le=50.0, doc="effect of interest on watch fraction")
    watch_satiation_weight: float = bounded(1.0, ge=0.0, le=50.0, doc="effect of satiation on watch fraction")
    watch_bias: float = bounded(0.0, ge=-50.0, le=50.0, doc="logit offset of the watch fraction")
    engagement_noise: float = bounded(0.1, ge=0.0, le=2.0, doc="std of mean-one lognormal engagement noise")


@dataclass(frozen=True)
class SessionConfig(Validated):
    """Cross-session return: a user who ends a session may come back later, sooner if satisfied."""

    multi_session: bool = False
    horizon_days: float = bounded(7.0, gt=0.0, le=10_000.0, doc="the episode covers this many days")
    return_delay: float = bounded(2.0, gt=0.0, le=1000.0, doc="days until return of a neutral user")
    delay_sensitivity: float = bounded(2.0, ge=0.0, le=20.0, doc="how much satisfaction shortens the delay")
    return_logit: float = bounded(1.0, ge=-20.0, le=20.0, doc="logit of coming back at all, neutral user")
    return_sensitivity: float = bounded(3.0, ge=0.0, le=50.0, doc="effect of satisfaction on coming back")


@dataclass(frozen=True)
class EnvConfig(Validated):
    """The whole environment: components plus what the recommender sees and is rewarded for."""

    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    user: UserConfig = field(default_factory=UserConfig)
    choice: ChoiceConfig = field(default_factory=ChoiceConfig)
    response: ResponseConfig = field(default_factory=ResponseConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    n_candidates: int = bounded(10, ge=2, le=1000, doc="items drawn from the catalogue each step")
    slate_size: int = bounded(1, ge=1, le=100, doc="items shown per step (1 = pick one item)")
    history_length: int = bounded(10, ge=1, le=200, doc="past steps visible in the observation")
    observe_user_state: bool = False
    reward: str | RewardFn = "engagement"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.slate_size > self.n_candidates:
            raise ValueError(f"EnvConfig.slate_size={self.slate_size} is out of range: allowed "
                             f"[1, n_candidates={self.n_candidates}]")
        if self.user.max_budget < self.user.initial_budget:
            raise ValueError(f"UserConfig.max_budget={self.user.max_budget} is out of range: allowed "
                             f"[initial_budget={self.user.initial_budget}, 10000.0]")
        if not (callable(self.reward) or self.reward in ("engagement", "click")):
            raise ValueError(f"EnvConfig.reward={self.reward!r}: allowed 'engagement', 'click' or a "
                             "callable mapping the response dict to a reward array")

    def replace(self, **overrides: Any) -> EnvConfig:
        """A copy with flat overrides routed to the component that owns each field."""
        if not overrides:
            return self
        per_component: dict[str, dict[str, Any]] = {}
        own: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in _COMPONENTS:
                own[key] = value
            elif key in _FIELD_OWNER:
                per_component.setdefault(_FIELD_OWNER[key], {})[key] = value
            elif key in _OWN_FIELDS:
                own[key] = value
            else:
                raise TypeError(f"unknown config field {key!r}; allowed: {', '.join(sorted(all_field_names()))}")
        for comp, values in per_component.items():
            own[comp] = dataclasses.replace(own.get(comp, getattr(self, comp)), **values)
        return dataclasses.replace(self, **own)


_COMPONENTS: dict[str, type] = {"catalog": CatalogConfig, "user": UserConfig, "choice": ChoiceConfig,
               "response": ResponseConfig, "session": SessionConfig}
_COMPONENT_TYPES.update(_COMPONENTS)
_FIELD_OWNER = {f.name: comp for comp, cls in _COMPONENTS.items() for f in dataclasses.fields(cls)}
_OWN_FIELDS = {f.name for f in dataclasses.fields(EnvConfig)} - set(_COMPONENTS)
assert len(_FIELD_OWNER) == sum(len(dataclasses.fields(c)) for c in _COMPONENTS.values()), "field names must be unique"


def all_field_names() -> set[str]:
    """Every keyword ``gymnasium.make`` accepts as a config override."""
    return set(_FIELD_OWNER) | _OWN_FIELDS | set(_COMPONENTS)


PRESETS: dict[str, EnvConfig] = {
    "default": EnvConfig(),
    "slate": EnvConfig(slate_size=3),
    "cross_session": EnvConfig(session=SessionConfig(multi_session=True)),
}


def make_config(preset: str | EnvConfig = "default", **overrides: Any) -> EnvConfig:
    """The named preset (or a given config) with flat overrides applied and validated."""
    if isinstance(preset, EnvConfig):
        base = preset
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(sorted(PRESETS))}")
    return base.replace(**overrides)
