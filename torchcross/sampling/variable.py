"""Meta-Dataset's variable-way variable-shot episode rule (a pure function of labels and a generator)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np

from torchcross._checks import check_generator, check_int
from torchcross.sampling.defaults import DEFAULT_QUERY_PER_CLASS
from torchcross.sampling.episode_index import (
    SINGLE_LABEL_TARGETS,
    EpisodeIndices,
    LabelIndex,
    check_classes,
)
from torchcross.sampling.episodes import get_episode_kind
from torchcross.sampling.per_class import sample_per_class

__all__ = ["sample_variable_episode"]


def sample_variable_episode(
    index: LabelIndex,
    rng: np.random.Generator,
    *,
    classes: Sequence[int] | None = None,
    min_ways: int = 5,
    max_ways: int = 50,
    max_query_per_class: int = DEFAULT_QUERY_PER_CLASS,
    max_support_size: int = 500,
    max_support_per_class: int = 100,
) -> EpisodeIndices:
    """Meta-Dataset's variable-way variable-shot rule (Triantafillou et al., 2020, section 3.2).

    1. ways ``n`` uniform in ``[min(min_ways, C), min(max_ways, C)]`` over the ``C``
       candidate classes (binary: always both classes); ordinal classes in key order;
    2. balanced query: ``q = min(max_query_per_class, floor(min_c |c| / 2))`` per class;
    3. support size ``|S| = min(max_support_size, sum_c ceil(beta * min(max_support_per_class,
       |c| - q)))`` with ``beta ~ U(0, 1]``;
    4. imbalanced support: ``k_c = min(floor(R_c * (|S| - n)) + 1, |c| - q)`` with
       ``R_c`` proportional to ``exp(alpha_c) * |c|``, ``alpha_c ~ U[log 0.5, log 2]``.

    Raises:
        ValueError: for multi-label tasks (the rule is defined for single-label classes),
            or a candidate class with fewer than two examples.

    Examples:
        >>> import numpy as np
        >>> from torchcross.sampling.episodes import index_labels
        >>> index = index_labels(np.repeat(np.arange(8), 20), "MULTICLASS_CLASSIFICATION")
        >>> ep = sample_variable_episode(index, np.random.default_rng(0), min_ways=3, max_ways=6)
        >>> 3 <= len(ep.classes) <= 6 and len(ep.query) % len(ep.classes) == 0
        True
    """
    check_generator(rng)
    if not isinstance(index, LabelIndex):
        raise TypeError(f"index must be a LabelIndex (see index_labels), got {type(index).__name__}")
    if index.task_target not in SINGLE_LABEL_TARGETS:
        raise ValueError(
            "the variable-way variable-shot rule is defined for single-label tasks, got "
            f"{index.task_target.name}; use SubTaskRandomFewShotMetaDataset for multi-label tasks"
        )
    min_ways = check_int(min_ways, "min_ways", 2)
    max_ways = check_int(max_ways, "max_ways", min_ways)
    max_query_per_class = check_int(max_query_per_class, "max_query_per_class", 1)
    max_support_per_class = check_int(max_support_per_class, "max_support_per_class", 1)
    max_support_size = check_int(max_support_size, "max_support_size", max_ways)
    kind = get_episode_kind(index.task_target)
    candidates = check_classes(index, kind.fixed_classes or classes)
    sizes = cast(np.ndarray, index.sizes)  # every kind has sizes
    sizes_all = np.array([sizes[index.position(c)] for c in candidates], dtype=np.int64)
    if len(candidates) < 2 or (sizes_all < 2).any():
        raise ValueError(
            f"the variable rule needs >= 2 candidate classes with >= 2 examples each, got counts "
            f"{dict(zip(candidates, sizes_all.tolist()))}"
        )
    n_cand = len(candidates)
    if kind.fixed_classes is not None:  # binary: both classes
        chosen = np.arange(n_cand)
    else:
        n_way = int(rng.integers(min(min_ways, n_cand), min(max_ways, n_cand) + 1))
        chosen = rng.choice(n_cand, size=n_way, replace=False)
        if kind.key_order:  # ordinal
            chosen = np.sort(chosen)
    n_way = len(chosen)
    sizes = sizes_all[chosen]
    q = min(max_query_per_class, int(sizes.min()) // 2)
    beta = 1.0 - rng.random()  # (0, 1]
    support_size = min(
        max_support_size, sum(math.ceil(beta * min(max_support_per_class, s - q)) for s in sizes)
    )
    alpha = rng.uniform(math.log(0.5), math.log(2.0), size=n_way)
    weight = np.exp(alpha) * sizes
    shots = np.minimum(
        np.floor(weight / weight.sum() * (support_size - n_way)).astype(np.int64) + 1, sizes - q
    )
    return sample_per_class(index, shots, q, rng, [candidates[j] for j in chosen], index.task_target)
