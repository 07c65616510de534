"""One name per concept in the core (``n_shot``, ``n_query``, ``n_way``; keyword-only after the source);
torchcross 0.0.6's names, positional ``collate_fn`` and derived attributes in the compat subclasses,
served at the 0.0.6 path ``torchcross.data.metadataset``. Both draw the same episodes."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import torchcross.data as core_namespace
import torchcross.data.metadataset as old_namespace
from torchcross.compat.data.metadataset import few_shot as compat
from torchcross.compat.data.metadataset.few_shot_dummies import TakeFirstFewShotMetaDataset as OldTakeFirst
from torchcross.data.metadataset import fixed_shot, sample_episode_set
from torchcross.data.metadataset.take_first import TakeFirstFewShotMetaDataset
from torchcross.data.sources import TensorTaskSource
from torchcross.sampling.episodes import (
    index_labels,
    sample_binary_episode,
    sample_episode,
    sample_multiclass_episode,
    sample_multilabel_episode,
    sample_ordinal_episode,
)
from torchcross.tasks.task import TaskDescription

SOURCE = TensorTaskSource(
    torch.randn(80, 3),
    torch.arange(80) % 4,
    TaskDescription("MULTICLASS_CLASSIFICATION", {i: f"c{i}" for i in range(4)}, "toy"),
)


def _labels(dataset: object) -> list[list[int]]:
    return [t.support[1].tolist() + t.query[1].tolist() for t in dataset]  # type: ignore[attr-defined]


def test_torchcross_data_serves_the_core_and_the_0_0_6_path_the_compat_classes() -> None:
    assert core_namespace.FewShotMetaDataset is fixed_shot.FewShotMetaDataset
    assert core_namespace.SubTaskRandomFewShotMetaDataset is fixed_shot.SubTaskRandomFewShotMetaDataset
    assert old_namespace.FewShotMetaDataset is compat.FewShotMetaDataset
    assert old_namespace.SubTaskRandomFewShotMetaDataset is compat.SubTaskRandomFewShotMetaDataset
    assert old_namespace.TakeFirstFewShotMetaDataset is OldTakeFirst
    assert issubclass(compat.SubTaskRandomFewShotMetaDataset, compat.FewShotMetaDataset)
    assert issubclass(compat.SubTaskRandomFewShotMetaDataset, fixed_shot.SubTaskRandomFewShotMetaDataset)


def test_the_core_takes_the_source_then_keywords_only() -> None:
    for cls in (
        fixed_shot.FewShotMetaDataset,
        fixed_shot.SubTaskRandomFewShotMetaDataset,
        TakeFirstFewShotMetaDataset,
    ):
        params = list(inspect.signature(cls).parameters.values())
        assert params[0].name == "task_source"
        assert all(p.kind is p.KEYWORD_ONLY for p in params[1:]), cls
    names = set(inspect.signature(fixed_shot.FewShotMetaDataset).parameters)
    assert {"n_shot", "n_query", "n_way"} <= names
    assert not {"n_support_samples_per_class", "n_query_samples_per_class"} & names
    with pytest.raises(TypeError, match="positional"):
        fixed_shot.FewShotMetaDataset(SOURCE, None, 2, 3)  # type: ignore[misc]


def test_the_0_0_6_signature_draws_the_core_episodes_bit_for_bit() -> None:
    old = compat.FewShotMetaDataset(SOURCE, None, 2, 3, 0, 6, seed=1, n_way=3)
    new = fixed_shot.FewShotMetaDataset(
        SOURCE, n_shot=2, n_query=3, n_way=3, filter_classes_min_samples=0, length=6, seed=1
    )
    assert _labels(old) == _labels(new)
    for a, b in zip(old, new):
        assert torch.equal(a.support[0], b.support[0])
        assert torch.equal(a.query[0], b.query[0])
    assert old.sampling_parameters() == new.sampling_parameters()
    # episode sets and fingerprints keep recording the keys they always had
    assert new.sampling_parameters()["n_support_samples_per_class"] == 2
    assert (old.n_support_samples_per_class, old.n_query_samples_per_class) == (new.n_shot, new.n_query)
    assert old.used_classes == list(new.classes) == [0, 1, 2, 3]
    assert not hasattr(new, "used_classes")
    assert not hasattr(new, "n_support_samples_per_class")


def test_the_0_0_6_sub_task_names_draw_the_core_episodes() -> None:
    old = compat.SubTaskRandomFewShotMetaDataset(
        SOURCE,
        n_support_samples_per_class_min=1,
        n_support_samples_per_class_max=3,
        n_query_samples_per_class=2,
        n_classes_min=2,
        n_classes_max=3,
        length=5,
        seed=2,
    )
    new = fixed_shot.SubTaskRandomFewShotMetaDataset(
        SOURCE, n_shot_min=1, n_shot_max=3, n_query=2, n_way_min=2, n_way_max=3, length=5, seed=2
    )
    assert _labels(old) == _labels(new)
    assert old.sampling_parameters() == new.sampling_parameters()
    assert (old.n_support_samples_per_class_min, old.n_support_samples_per_class_max) == (1, 3)
    assert (old.n_classes_min, old.n_classes_max, new.n_way_min, new.n_way_max) == (2, 3, 2, 3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fixed_shot.FewShotMetaDataset(SOURCE, n_shot=0), "n_shot must be >= 1"),
        (lambda: compat.FewShotMetaDataset(SOURCE, None, 0), "n_support_samples_per_class must be >= 1"),
        (lambda: fixed_shot.FewShotMetaDataset(SOURCE, n_shot=19, n_query=2), r"n_shot \+ n_query = 21"),
        (
            lambda: compat.FewShotMetaDataset(SOURCE, None, 19, 2),
            r"n_support_samples_per_class \+ n_query_samples_per_class = 21",
        ),
        (
            lambda: fixed_shot.SubTaskRandomFewShotMetaDataset(SOURCE, n_way_min=5),
            r"n_way_min=5 exceeds the classes available \(n_way_max=4",
        ),
        (
            lambda: compat.SubTaskRandomFewShotMetaDataset(SOURCE, n_classes_min=5),
            r"n_classes_min=5 exceeds the classes available \(n_classes_max=4",
        ),
        (lambda: TakeFirstFewShotMetaDataset(SOURCE, n_shot=11), r"needs 2 \* n_shot = 22"),
        (lambda: OldTakeFirst(SOURCE, None, 11), r"needs 2 \* n_shot_per_class = 22"),
    ],
)
def test_errors_name_the_parameter_the_caller_used(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_take_first_keeps_its_0_0_6_signature_and_attribute() -> None:
    old, new = OldTakeFirst(SOURCE, None, 2), TakeFirstFewShotMetaDataset(SOURCE, n_shot=2)
    assert old.dataset is SOURCE
    assert new.task_source is SOURCE
    assert [y for _, y in old[0].support] == [y for _, y in new[0].support]


def test_sample_episode_set_takes_n_shot_and_warns_on_its_former_keywords() -> None:
    new = sample_episode_set(SOURCE, 3, n_shot=2, n_query=3, seed=4)
    assert new.first_difference(sample_episode_set(SOURCE, 3, 2, 3, seed=4)) is None  # positional: unchanged
    deprecated = r"n_support_samples_per_class=\.\.\.\) is deprecated: use n_shot"
    with pytest.warns(DeprecationWarning, match=deprecated):
        old = sample_episode_set(SOURCE, 3, n_support_samples_per_class=2, n_query=3, seed=4)
    assert old.first_difference(new) is None
    with pytest.raises(TypeError, match="got both n_support_samples_per_class= and n_shot="):
        sample_episode_set(SOURCE, 3, n_shot=2, n_support_samples_per_class=2)


@pytest.mark.parametrize(
    ("sample", "labels"),
    [
        (sample_multiclass_episode, np.repeat([0, 1, 2], 10)),
        (sample_ordinal_episode, np.repeat([0, 1, 2], 10)),
        (sample_binary_episode, np.array([0, 1] * 10)),
        (sample_multilabel_episode, np.random.default_rng(0).integers(0, 2, (200, 3))),
        (sample_episode, index_labels(np.repeat([0, 1, 2], 10), "MULTICLASS_CLASSIFICATION")),
    ],
)
def test_episode_rules_take_n_shot_and_warn_on_n_support(sample: object, labels: object) -> None:
    new = sample(labels, n_shot=2, n_query=1, rng=np.random.default_rng(3))  # type: ignore[operator]
    with pytest.warns(DeprecationWarning, match="n_support=...\\) is deprecated: use n_shot"):
        old = sample(labels, n_support=2, n_query=1, rng=np.random.default_rng(3))  # type: ignore[operator]
    assert np.array_equal(old.support, new.support)
    assert np.array_equal(old.query, new.query)
