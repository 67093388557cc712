"""Response to a clicked item: how much of it the user watches, and how satisfied that leaves them."""

from __future__ import annotations

import numpy as np

from recsim_env.config import ResponseConfig


def watch_fraction(quality: np.ndarray, affinity: np.ndarray, boredom: np.ndarray,
                   config: ResponseConfig) -> np.ndarray:
    """Share of an item the user watches once clicked, in (0, 1).

    Quality and interest keep the user watching; satiation with the item's topics cuts it short.
    """
    logit = (config.watch_quality_weight * quality + config.watch_interest_weight * affinity
             - config.watch_satiation_weight * boredom + config.watch_bias)
    return 1.0 / (1.0 + np.exp(-logit))


def satisfaction_from_watch(fraction: np.ndarray) -> np.ndarray:
    """Satisfaction in (-1, 1): watching most of an item satisfies, abandoning it disappoints."""
    return 2.0 * fraction - 1.0


def engagement_noise(normal: np.ndarray, config: ResponseConfig) -> np.ndarray:
    """Mean-one lognormal factors from standard normals."""
    sigma = config.engagement_noise
    return np.exp(sigma * normal - 0.5 * sigma * sigma)
