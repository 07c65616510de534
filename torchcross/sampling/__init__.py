"""Episode sampling rules: pure functions of (labels, rule, generator), NumPy only.

* [`episode_index`][torchcross.sampling.episode_index]: the label index an episode is drawn from,
  episode labels and relabelled descriptions;
* [`per_class`][torchcross.sampling.per_class]: drawing given numbers of examples per class;
* [`episodes`][torchcross.sampling.episodes]: fixed-shot episodes for every task kind, and the
  dispatch table of the rules (`EPISODE_KINDS`);
* `multilabel`: the greedy cover for multi-label episodes
  (label rows as bit masks: `bits`), and `medimeta_multilabel`: the MedIMeta authors' rule;
* [`variable`][torchcross.sampling.variable]: Meta-Dataset's variable-way, variable-shot rule;
* [`defaults`][torchcross.sampling.defaults]: the shots, queries and class filter every episode
  dataset and sampler defaults to;
* [`weighting`][torchcross.sampling.weighting] and `multitask_plan`:
  which source task a multi-task stream draws next.

Examples:
    >>> import numpy as np
    >>> from torchcross.sampling import index_labels, sample_episode
    >>> index = index_labels(np.repeat(np.arange(3), 10), "MULTICLASS_CLASSIFICATION")
    >>> episode = sample_episode(index, 2, 3, np.random.default_rng(0))
    >>> len(episode.support), len(episode.query)
    (6, 9)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.sampling.bits import row_bits as row_bits
    from torchcross.sampling.defaults import (
        DEFAULT_FILTER_CLASSES_MIN_SAMPLES as DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
    )
    from torchcross.sampling.defaults import DEFAULT_QUERY_PER_CLASS as DEFAULT_QUERY_PER_CLASS
    from torchcross.sampling.defaults import DEFAULT_SHOTS as DEFAULT_SHOTS
    from torchcross.sampling.episode_index import EpisodeIndices as EpisodeIndices
    from torchcross.sampling.episode_index import LabelIndex as LabelIndex
    from torchcross.sampling.episode_index import episode_labels as episode_labels
    from torchcross.sampling.episode_index import index_labels as index_labels
    from torchcross.sampling.episode_index import relabel_description as relabel_description
    from torchcross.sampling.episodes import EPISODE_KINDS as EPISODE_KINDS
    from torchcross.sampling.episodes import MULTILABEL_SAMPLERS as MULTILABEL_SAMPLERS
    from torchcross.sampling.episodes import EpisodeKind as EpisodeKind
    from torchcross.sampling.episodes import get_episode_kind as get_episode_kind
    from torchcross.sampling.episodes import sample_binary_episode as sample_binary_episode
    from torchcross.sampling.episodes import sample_episode as sample_episode
    from torchcross.sampling.episodes import sample_multiclass_episode as sample_multiclass_episode
    from torchcross.sampling.episodes import sample_multilabel_episode as sample_multilabel_episode
    from torchcross.sampling.episodes import sample_ordinal_episode as sample_ordinal_episode
    from torchcross.sampling.medimeta_multilabel import (
        sample_medimeta_multilabel_indices as sample_medimeta_multilabel_indices,
    )
    from torchcross.sampling.medimeta_multilabel import trim_to_quota as trim_to_quota
    from torchcross.sampling.multilabel import cover_quotas as cover_quotas
    from torchcross.sampling.multilabel import sample_multilabel_indices as sample_multilabel_indices
    from torchcross.sampling.multitask_plan import StreamPlan as StreamPlan
    from torchcross.sampling.multitask_plan import exhaustive_order as exhaustive_order
    from torchcross.sampling.multitask_plan import occurrences as occurrences
    from torchcross.sampling.multitask_plan import task_permutation as task_permutation
    from torchcross.sampling.per_class import sample_per_class as sample_per_class
    from torchcross.sampling.variable import sample_variable_episode as sample_variable_episode
    from torchcross.sampling.weighting import WEIGHTINGS as WEIGHTINGS
    from torchcross.sampling.weighting import TaskWeighting as TaskWeighting
    from torchcross.sampling.weighting import resolve_weighting as resolve_weighting
    from torchcross.sampling.weighting import sampling_probabilities as sampling_probabilities

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "DEFAULT_FILTER_CLASSES_MIN_SAMPLES": "defaults",
    "DEFAULT_QUERY_PER_CLASS": "defaults",
    "DEFAULT_SHOTS": "defaults",
    "EPISODE_KINDS": "episodes",
    "MULTILABEL_SAMPLERS": "episodes",
    "EpisodeKind": "episodes",
    "get_episode_kind": "episodes",
    "EpisodeIndices": "episode_index",
    "LabelIndex": "episode_index",
    "episode_labels": "episode_index",
    "index_labels": "episode_index",
    "relabel_description": "episode_index",
    "sample_binary_episode": "episodes",
    "sample_episode": "episodes",
    "sample_multiclass_episode": "episodes",
    "sample_multilabel_episode": "episodes",
    "sample_ordinal_episode": "episodes",
    "sample_per_class": "per_class",
    "cover_quotas": "multilabel",
    "sample_medimeta_multilabel_indices": "medimeta_multilabel",
    "trim_to_quota": "medimeta_multilabel",
    "row_bits": "bits",
    "sample_multilabel_indices": "multilabel",
    "sample_variable_episode": "variable",
    "TaskWeighting": "weighting",
    "WEIGHTINGS": "weighting",
    "resolve_weighting": "weighting",
    "sampling_probabilities": "weighting",
    "StreamPlan": "multitask_plan",
    "exhaustive_order": "multitask_plan",
    "occurrences": "multitask_plan",
    "task_permutation": "multitask_plan",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
