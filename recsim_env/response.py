"""Response to a clicked item: how much of it the user watches, and how satisfied that leaves them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from recsim_env._cache import by_ndim, f32, per_config
from recsim_env.config import ResponseConfig

_ONE, _TWO = f32(1.0), f32(2.0)


@per_config
def _constants(config: ResponseConfig) -> SimpleNamespace:
    sigma = config.engagement_noise
    return SimpleNamespace(
        # Weights of the negated watch logit, so the sigmoid needs no separate negation.
        quality=f32(-config.watch_quality_weight),
        match=by_ndim(np.array([-config.watch_interest_weight, config.watch_satiation_weight], np.float32)),
        bias=f32(-config.watch_bias), one=_ONE, sigma=f32(sigma), noise_shift=f32(-0.5 * sigma * sigma),
    )


def watch_fraction(quality: np.ndarray, affinity: np.ndarray, boredom: np.ndarray,
                   config: ResponseConfig) -> np.ndarray:
    """Share of an item the user watches once clicked, in (0, 1).

    Quality and interest keep the user watching; satiation with the item's topics cuts it short:
    ``sigmoid(wq quality + wi affinity - ws boredom + bias)``.
    """
    match = np.stack(np.broadcast_arrays(affinity, boredom), axis=-1)
    return watch_of_match(weighted_quality(quality, config), match, config)


def weighted_quality(quality: np.ndarray, config: ResponseConfig) -> np.ndarray:
    """The quality term of the negated watch logit: it depends on the item alone, so it can be computed once."""
    return quality * _constants(config).quality


def watch_of_match(quality_term: np.ndarray, match: np.ndarray, config: ResponseConfig) -> np.ndarray:
    """``watch_fraction`` from ``weighted_quality`` and ``match (..., 2)`` (affinity, boredom).

    One product weighs both topic terms; the sums run in the order of the formula, so the numbers
    are those of the terms computed one by one.
    """
    c = _constants(config)
    terms = match * c.match[match.ndim]
    negated_logit = quality_term + terms[..., 0] + terms[..., 1]
    if c.bias:  # adding a zero bias could only flip the sign of a zero logit, which exp ignores
        negated_logit = negated_logit + c.bias
    return c.one / (c.one + np.exp(negated_logit))


def satisfaction_from_watch(fraction: np.ndarray) -> np.ndarray:
    """Satisfaction in (-1, 1): watching most of an item satisfies, abandoning it disappoints."""
    return _TWO * fraction - _ONE


def engagement_noise(normal: np.ndarray, config: ResponseConfig) -> np.ndarray:
    """Mean-one lognormal factors from standard normals."""
    c = _constants(config)
    return np.exp(normal * c.sigma + c.noise_shift)
