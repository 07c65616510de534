"""Every episode dataset and sampler defaults to the same shots, queries and class filter."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import pytest
import torch

import torchcross.data.metadataset as metadataset
import torchcross.data.metadataset.fixed_shot as fixed_shot
from torchcross.cli.app import build_parser
from torchcross.data.metadataset import EpisodeMetaDataset, FewShotMetaDataset, sample_episode_set
from torchcross.data.sources import TensorTaskSource
from torchcross.protocol.config import EvaluationConfig
from torchcross.sampling.defaults import (
    DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
    DEFAULT_QUERY_PER_CLASS,
    DEFAULT_SHOTS,
)
from torchcross.sampling.variable import sample_variable_episode
from torchcross.tasks.task import TaskDescription

DEFAULTS = {
    "n_shot": DEFAULT_SHOTS,
    "n_query": DEFAULT_QUERY_PER_CLASS,
    "n_support_samples_per_class": DEFAULT_SHOTS,
    "n_query_samples_per_class": DEFAULT_QUERY_PER_CLASS,
    "max_query_per_class": DEFAULT_QUERY_PER_CLASS,
    "filter_classes_min_samples": DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
}

# the 0.0.6 signatures at torchcross.data.metadataset (lazy: read via __all__) and the core classes
_NAMES = [getattr(m, n) for m in (metadataset, fixed_shot) for n in m.__all__]
EPISODE_DATASETS = sorted(
    (
        obj
        for obj in set(_NAMES)
        if inspect.isclass(obj) and issubclass(obj, EpisodeMetaDataset) and not inspect.isabstract(obj)
    ),
    key=lambda c: c.__module__ + "." + c.__name__,
)
SAMPLERS: list[Callable] = [*EPISODE_DATASETS, sample_episode_set, sample_variable_episode]


def test_the_defaults_are_the_papers() -> None:
    assert (DEFAULT_SHOTS, DEFAULT_QUERY_PER_CLASS, DEFAULT_FILTER_CLASSES_MIN_SAMPLES) == (5, 10, 0)
    assert {c.__name__ for c in EPISODE_DATASETS} >= {
        "FewShotMetaDataset",
        "SubTaskRandomFewShotMetaDataset",
        "VariableWayShotMetaDataset",
    }


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.__name__)
def test_every_signature_uses_the_shared_defaults(sampler: Callable) -> None:
    params = inspect.signature(sampler).parameters
    shared = {name: params[name].default for name in DEFAULTS if name in params}
    assert shared, f"{sampler.__name__} takes none of the shared parameters"
    assert shared == {name: DEFAULTS[name] for name in shared}


def test_the_cli_and_the_protocol_evaluate_on_the_same_episodes_by_default() -> None:
    args = build_parser().parse_args(["episodes", "sample", "--data-path", "d", "--task", "t", "--out", "o"])
    assert (args.n_shot, args.n_query) == (DEFAULT_SHOTS, DEFAULT_QUERY_PER_CLASS)
    fields = {f.name: f.default for f in dataclasses.fields(EvaluationConfig)}
    assert (fields["n_shot"], fields["n_query"]) == (DEFAULT_SHOTS, DEFAULT_QUERY_PER_CLASS)


def test_a_small_task_works_with_the_defaults() -> None:
    d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "small")
    src = TensorTaskSource(torch.arange(45.0)[:, None], torch.arange(45) % 3, d)  # 15 per class: 5 + 10
    task = FewShotMetaDataset(src, length=1, seed=0)[0]
    assert torch.bincount(task.support[1]).tolist() == [DEFAULT_SHOTS] * 3
    assert torch.bincount(task.query[1]).tolist() == [DEFAULT_QUERY_PER_CLASS] * 3
    stored = sample_episode_set(src, 1).episodes[0]  # the same episode as the dataset with seed 0
    assert stored.support.tolist() == task.support[0][:, 0].long().tolist()
    assert stored.query.tolist() == task.query[0][:, 0].long().tolist()
