"""Response to a clicked item: how much of it the user watches, and how satisfied that leaves them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from recsim_env._cache import f32, per_config
from recsim_env.config import ResponseConfig

_ONE, _TWO = f32(1.0), f32(2.0)


@per_config
def _constants(config: ResponseConfig) -> SimpleNamespace:
    sigma = config.engagement_noise
    return SimpleNamespace(
        # Weights of the negated watch logit, so the sigmoid needs no separate negation.
        quality=f32(-config.watch_quality_weight), interest=f32(-config.watch_interest_weight),
        satiation=f32(config.watch_satiation_weight), bias=f32(-config.watch_bias), one=_ONE,
        sigma=f32(sigma), noise_shift=f32(-0.5 * sigma * sigma),
    )


def watch_fraction(quality: np.ndarray, affinity: np.ndarray, boredom: np.ndarray,
                   config: ResponseConfig) -> np.ndarray:
    """Share of an item the user watches once clicked, in (0, 1).

    Quality and interest keep the user watching; satiation with the item's topics cuts it short:
    ``sigmoid(wq quality + wi affinity - ws boredom + bias)``.
    """
    c = _constants(config)
    negated_logit = quality * c.quality + affinity * c.interest + boredom * c.satiation + c.bias
    return c.one / (c.one + np.exp(negated_logit))


def satisfaction_from_watch(fraction: np.ndarray) -> np.ndarray:
    """Satisfaction in (-1, 1): watching most of an item satisfies, abandoning it disappoints."""
    return _TWO * fraction - _ONE


def engagement_noise(normal: np.ndarray, config: ResponseConfig) -> np.ndarray:
    """Mean-one lognormal factors from standard normals."""
    c = _constants(config)
    return np.exp(normal * c.sigma + c.noise_shift)
