"""The item catalogue: what each item is about, how clickable it looks and how good it really is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim_env.config import CatalogConfig

#: Columns of :attr:`Catalog.observable`, the per-item features a recommender may see.
ITEM_FEATURES_EXTRA = ("appeal", "quality_score", "length")


@dataclass(frozen=True)
class Catalog:
    """Arrays describing every item (items first). Built once per config and never changed.

    Attributes:
        topic: main topic of each item, ``(n_items,)`` int.
        features: topic mixture, rows on the simplex, ``(n_items, n_topics)`` float32.
        appeal: how clickable the item looks, in [0, 1].
        quality: how satisfying it really is, in [-1, 1]; clickbait has high appeal and low quality.
        length: time a full view takes, > 0.
        quality_score: a noisy, observable estimate of quality (think average rating), in [-1, 1].
        clickbait: whether the item was drawn from the clickbait segment.
        observable: ``features | appeal | quality_score | length / max_length``, float32, what
            observations show of an item.
    """

    topic: np.ndarray
    features: np.ndarray
    appeal: np.ndarray
    quality: np.ndarray
    length: np.ndarray
    quality_score: np.ndarray
    clickbait: np.ndarray
    observable: np.ndarray
    max_length: float

    @property
    def n_items(self) -> int:
        return int(self.topic.shape[0])

    @property
    def n_topics(self) -> int:
        return int(self.features.shape[1])


def make_catalog(config: CatalogConfig, rng: np.random.Generator | None = None) -> Catalog:
    """Draw a catalogue. Uses ``config.catalog_seed`` unless a generator is given."""
    rng = np.random.default_rng(config.catalog_seed) if rng is None else rng
    n, k = config.n_items, config.n_topics
    topic = rng.integers(0, k, size=n)
    # Main topic carries `topic_purity` of the mass; the rest is spread by a sparse Dirichlet.
    spread = rng.dirichlet(np.full(k, 0.3), size=n)
    features = (1.0 - config.topic_purity) * spread
    features[np.arange(n), topic] += config.topic_purity
    clickbait = rng.random(n) < config.clickbait_fraction
    honest_quality = rng.normal(0.4, 0.3, size=n)
    bait_quality = rng.normal(-0.5, 0.2, size=n)
    quality = np.clip(np.where(clickbait, bait_quality, honest_quality), -1.0, 1.0)
    # Honest items look about as good as they are; clickbait looks better than anything honest.
    honest_appeal = 0.35 + 0.25 * quality + rng.normal(0.0, 0.1, size=n)
    bait_appeal = rng.beta(8.0, 2.0, size=n)
    appeal = np.clip(np.where(clickbait, bait_appeal, honest_appeal), 0.0, 1.0)
    length = config.mean_length * rng.gamma(4.0, 0.25, size=n)
    max_length = float(config.mean_length * 8.0)
    length = np.clip(length, 0.05 * config.mean_length, max_length)
    quality_score = np.clip(quality + rng.normal(0.0, config.quality_signal_noise, size=n), -1.0, 1.0)
    observable = np.concatenate(
        [features, appeal[:, None], quality_score[:, None], (length / max_length)[:, None]], axis=1
    ).astype(np.float32)
    return Catalog(
        topic=topic,
        features=features.astype(np.float32),
        appeal=appeal.astype(np.float32),
        quality=quality.astype(np.float32),
        length=length.astype(np.float32),
        quality_score=quality_score.astype(np.float32),
        clickbait=clickbait,
        observable=observable,
        max_length=max_length,
    )
