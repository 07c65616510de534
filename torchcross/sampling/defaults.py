"""The defaults every episode dataset and sampler shares (the MedIMeta paper's evaluation episodes).

Every signature that takes these parameters uses these constants, so the episode datasets
([`torchcross.data.metadataset`][torchcross.data.metadataset]),
[`sample_episode_set()`][torchcross.data.metadataset.sample_episode_set]
and [`sample_variable_episode()`][torchcross.sampling.variable.sample_variable_episode] agree: five shots, ten
query examples per class, and no class filter unless asked for.

Examples:
    >>> DEFAULT_SHOTS, DEFAULT_QUERY_PER_CLASS, DEFAULT_FILTER_CLASSES_MIN_SAMPLES
    (5, 10, 0)
"""

from __future__ import annotations

__all__ = ["DEFAULT_FILTER_CLASSES_MIN_SAMPLES", "DEFAULT_QUERY_PER_CLASS", "DEFAULT_SHOTS"]

DEFAULT_SHOTS: int = 5
"""Support examples per class (``n_support_samples_per_class``)."""

DEFAULT_QUERY_PER_CLASS: int = 10
"""Query examples per class (``n_query_samples_per_class``, ``max_query_per_class``)."""

DEFAULT_FILTER_CLASSES_MIN_SAMPLES: int = 0
"""``filter_classes_min_samples``: drop no class beyond those too small for one episode."""
