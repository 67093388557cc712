"""Per-config constants, memoised by the config object's identity."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

_MAX_ENTRIES = 256


def per_config(build: Callable[[Any], T]) -> Callable[[Any], T]:
    """Memoise ``build(config)`` by identity.

    The configs are frozen dataclasses whose generated ``__hash__`` rehashes every field on each
    call (0.3-1 us), a cost the step would pay several times; an identity lookup costs ~0.07 us.
    The entry keeps the config alive, so its ``id`` cannot be reused while cached.
    """
    cache: dict[int, tuple[Any, T]] = {}

    @functools.wraps(build)
    def get(config: Any) -> T:
        hit = cache.get(id(config))
        if hit is not None and hit[0] is config:
            return hit[1]
        if len(cache) >= _MAX_ENTRIES:
            cache.clear()
        value = build(config)
        cache[id(config)] = (config, value)
        return value

    return get


def f32(value: float) -> np.ndarray:
    """A 0-d float32 array: as an operand it costs about half of a Python float (no conversion per op)."""
    return np.array(value, np.float32)


def by_ndim(values: np.ndarray, max_ndim: int = 32) -> tuple[np.ndarray, ...]:
    """``values`` with leading ones added, indexed by the ``ndim`` of the array it is combined with.

    With the operand of one user (all leading sizes 1) the shapes are then equal, and numpy runs its
    same-shape loop, which costs about a third of setting up a broadcast; any other batch broadcasts
    as before.
    """
    return tuple(values.reshape((1,) * max(n - values.ndim, 0) + values.shape) for n in range(max_ndim + 1))
