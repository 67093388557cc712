"""Sequential next-item recommenders and their policy wrapper.

Models (each in its own module, all trained and evaluated by ``training``):
``popularity`` (counts), ``lstm`` (GRU4Rec style, ``recurrent``), ``gcn`` (SR-GNN style, ``srgnn``),
``lightgcn`` (``lightgcn``) and ``transformer`` (SASRec style, ``transformer``). ``checkpoint``
builds, fits, saves and loads them; ``policy`` turns a fitted one into a
:class:`~agents.base.Recommender` for the simulator; ``click`` fits a click head on a frozen one
(``SequentialPolicy(env, trained, click_head=fit_click_head(trained, log))``).

The registry factories below import torch only when called, so ``import agents`` stays light.
Each needs a fitted model, given in exactly one of three ways::

    agents.make("lstm", env, checkpoint="lstm.pt")       # a file written by TrainedModel.save
    agents.make("lstm", env, model=trained)              # a TrainedModel in memory
    agents.make("gcn", env, log="log.parquet", epochs=20)  # fit first on an interaction log

With ``log`` (a path written by ``recsim_env.logs.write_log``, or an ``InteractionLog``), the model
is fitted on the log's click sequences under leave-last-out (the second last click of each user for
early stopping); ``config`` (a dict or the model's config dataclass) sets the architecture and any
other keyword is a ``TrainConfig`` field (``epochs``, ``lr``, ``seed``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.base import Recommender

KINDS: tuple[str, ...] = ("popularity", "lstm", "gcn", "lightgcn", "transformer")


def fit_on_log(kind: str, log: Any, config: Any = None, progress: bool | None = None, **train_fields: Any):
    """Fit a model of ``kind`` on an interaction log's click sequences (leave-last-out)."""
    from agents.sequential.checkpoint import fit
    from agents.sequential.training import TrainConfig
    from recsim_env.logs import InteractionLog, leave_last_out, read_log

    log = log if isinstance(log, InteractionLog) else read_log(log)
    split = leave_last_out(log.to_sequences())
    trained, _ = fit(kind, split.train, split.valid, config, TrainConfig(**train_fields), progress=progress)
    return trained


def _factory(kind: str) -> Callable[..., Recommender]:
    def make(env: gym.Env | gym.vector.VectorEnv, *, model: Any = None, checkpoint: str | Path | None = None,
             log: Any = None, config: Any = None, progress: bool | None = None, **train_fields: Any) -> Recommender:
        from agents.sequential.checkpoint import TrainedModel
        from agents.sequential.policy import SequentialPolicy

        given = [name for name, value in (("model", model), ("checkpoint", checkpoint), ("log", log))
                 if value is not None]
        if len(given) != 1:
            raise TypeError(f"agents.make({kind!r}, env, ...) needs exactly one of model=TrainedModel, "
                            f"checkpoint=path or log=path; got {given or 'none'}")
        if (config is not None or train_fields) and log is None:
            raise TypeError("config and training fields apply only when fitting on a log")
        if checkpoint is not None:
            model = TrainedModel.load(checkpoint, kind=kind)
        elif log is not None:
            model = fit_on_log(kind, log, config, progress, **train_fields)
        if not isinstance(model, TrainedModel) or model.kind != kind:
            raise TypeError(f"model= must be a TrainedModel of kind {kind!r}, got {model!r}")
        return SequentialPolicy(env, model)

    make.__name__ = make.__qualname__ = f"make_{kind}"
    make.__doc__ = f"A {kind!r} policy from a fitted model (see the agents.sequential docstring)."
    return make


FACTORIES: dict[str, Callable[..., Recommender]] = {kind: _factory(kind) for kind in KINDS}
