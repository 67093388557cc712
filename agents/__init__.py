"""Every recommender, behind one interface and a registry in the Gymnasium manner.

>>> import agents, gymnasium as gym, recsim_env
>>> env = gym.make_vec("recsim_env/InterestDrift-v0", num_envs=4, vectorization_mode="vector_entry_point")
>>> policy = agents.make("myopic", env)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

from agents.base import Recommender
from agents.evaluation import EpisodeStats, evaluate
from agents.qlearning import TabularQLearning
from agents.reference import HeuristicPolicy, MyopicPolicy, RandomPolicy

__all__ = ["EpisodeStats", "Recommender", "evaluate", "make", "names", "register"]

_REGISTRY: dict[str, Callable[..., Recommender]] = {}


def register(name: str, factory: Callable[..., Recommender]) -> None:
    """Make ``factory(env, **config)`` available as ``make(name, env, **config)``."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered recommender names, sorted."""
    return sorted(_REGISTRY)


def make(name: str, env: gym.Env | gym.vector.VectorEnv, **config: Any) -> Recommender:
    """Build a registered recommender for ``env``."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown recommender {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name](env, **config)


for _cls in (RandomPolicy, MyopicPolicy, HeuristicPolicy, TabularQLearning):
    register(_cls.name, _cls)


def _lazy(module: str, cls: str) -> Callable[..., Recommender]:
    """A factory that imports ``module`` (and so torch or SB3) only when the agent is made."""
    def factory(env: gym.Env | gym.vector.VectorEnv, **config: Any) -> Recommender:
        import importlib

        return getattr(importlib.import_module(module), cls)(env, **config)

    return factory


register("dqn", _lazy("agents.dqn", "DQNAgent"))
register("planner", _lazy("agents.planner", "PlannerPolicy"))
register("dqn_myopic", _lazy("agents.dqn", "MyopicDQNAgent"))
register("slateq", _lazy("agents.slateq", "SlateQAgent"))
register("sb3_dqn", _lazy("agents.sb3", "SB3DQN"))
register("sb3_ppo", _lazy("agents.sb3", "SB3PPO"))


def _offline(kind: str) -> Callable[..., Recommender]:
    """A factory that trains the offline learner ``kind`` on the ``log=`` it is given (it never steps ``env``)."""
    def factory(env: gym.Env | gym.vector.VectorEnv, log: Any = None, **config: Any) -> Recommender:
        if log is None:
            raise TypeError(f"{kind} learns from a log alone: agents.make({kind!r}, env, log=propensity_log)")
        from agents.offline import train

        return train(env, log, kind=kind, progress=False, **config).agent

    return factory


for _kind in ("cql", "bcq", "bc"):
    register(_kind, _offline(_kind))

from agents.sequential import FACTORIES as _SEQUENTIAL  # noqa: E402  (torch is imported only when one is made)

for _name, _factory in _SEQUENTIAL.items():
    register(_name, _factory)
