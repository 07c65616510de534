"""N-way episodes: ``n_way=`` on FewShotMetaDataset and sample_episode_set."""

from __future__ import annotations

import hashlib
import itertools
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_episode_dataset_contract import KINDS, SOURCES

from torchcross.data.metadataset import EpisodeSet, FewShotMetaDataset, sample_episode_set
from torchcross.data.sources import TensorTaskSource
from torchcross.tasks.task import TaskDescription


def _source(sizes: list[int], kind: str = "MULTICLASS_CLASSIFICATION", keys: list[int] | None = None):
    keys = list(range(len(sizes))) if keys is None else keys
    labels = np.repeat(keys, sizes)
    d = TaskDescription(kind, {k: f"class {k}" for k in keys}, "toy")
    return TensorTaskSource(torch.arange(len(labels), dtype=torch.float32)[:, None], labels, d)


def test_without_n_way_the_episodes_are_the_all_class_episodes_bit_for_bit() -> None:
    # fingerprints of the episodes drawn before n_way existed
    digest = hashlib.sha256()
    for kind in KINDS:
        ds = FewShotMetaDataset(SOURCES[kind, 0], None, 2, 3, length=20, seed=7)
        ds.set_epoch(1)
        for i in range(20):
            ep = ds.sample_indices(i)
            digest.update(np.asarray(ep.support, np.int64).tobytes())
            digest.update(np.asarray(ep.query, np.int64).tobytes())
            digest.update(repr(ep.classes).encode())
    assert digest.hexdigest() == "bbd61f3ed8b23959f09ea09b58ff382d2aade985ba5d8ad438a8b50ac1fe2826"
    stored = sample_episode_set(SOURCES["multiclass", 1], 10, 2, 3, seed=3).to_json()
    assert "n_way" not in json.loads(stored)["sampling"]
    assert (
        hashlib.sha256(stored.encode()).hexdigest()
        == "c92affbc1d3021e85707803ed86cc046888f1110fd63c201e5b8f8df4ae7392b"
    )


@pytest.mark.parametrize("kind", ["multiclass", "ordinal"])
def test_n_way_equal_to_the_usable_classes_is_the_all_class_episode(kind: str) -> None:
    # with labels in class order (multi-class n_way episodes permute them by default)
    every = FewShotMetaDataset(SOURCES[kind, 0], None, 2, 2, length=5, seed=1)
    four_way = FewShotMetaDataset(
        SOURCES[kind, 0], None, 2, 2, length=5, seed=1, n_way=4, permute_labels=False
    )
    for a, b in zip(every, four_way):
        assert torch.equal(a.support[0], b.support[0])
        assert torch.equal(a.query[1], b.query[1])
        assert a.description == b.description


@st.composite
def _n_way_cases(draw):
    n_classes = draw(st.integers(2, 9))
    k, q = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    sizes = draw(st.lists(st.integers(1, 8), min_size=n_classes, max_size=n_classes))
    n_way = draw(st.integers(2, n_classes))
    ordinal = draw(st.booleans())
    keys = sorted(draw(st.sets(st.integers(0, 30), min_size=n_classes, max_size=n_classes)))
    return sizes, keys, k, q, n_way, ordinal, draw(st.integers(0, 2**32)), draw(st.integers(0, 50))


@settings(max_examples=60, deadline=None)
@given(_n_way_cases())
def test_n_way_episodes_hold_n_way_usable_classes_in_class_order(case) -> None:
    sizes, keys, k, q, n_way, ordinal, seed, index = case
    kind = "ORDINAL_REGRESSION" if ordinal else "MULTICLASS_CLASSIFICATION"
    if not ordinal:
        keys = list(range(len(keys)))  # multi-class keys are 0..C-1
    usable = [key for key, size in zip(keys, sizes) if size >= k + q]
    assume(len(usable) >= n_way)
    src = _source(sizes, kind, keys)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = FewShotMetaDataset(src, None, k, q, seed=seed, n_way=n_way, permute_labels=False)
    assert len(caught) == (len(usable) < len(keys))  # one warning naming the classes left out
    task = ds[index]
    names = list(task.description.classes.values())
    episode_keys = [int(name.split()[1]) for name in names]
    assert list(task.description.classes) == list(range(n_way))
    assert len(episode_keys) == n_way
    assert episode_keys == sorted(episode_keys)  # the task's class order
    assert set(episode_keys) <= set(usable)
    labels = np.asarray(src.labels)
    for (x, y), per_class in ((task.support, k), (task.query, q)):
        assert torch.bincount(y, minlength=n_way).tolist() == [per_class] * n_way
        original = labels[x[:, 0].long().numpy()]
        assert [episode_keys[i] for i in y.tolist()] == original.tolist()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        again = FewShotMetaDataset(src, None, k, q, seed=seed, n_way=n_way, permute_labels=False)[index]
    assert torch.equal(again.support[0], task.support[0])
    assert torch.equal(again.query[0], task.query[0])


def test_n_way_subsets_are_uniform() -> None:
    src = _source([4] * 6)
    ds = FewShotMetaDataset(src, None, 1, 1, length=1500, seed=0, n_way=2)
    pairs = Counter(tuple(sorted(ds.sample_indices(i).classes)) for i in range(1500))
    assert set(pairs) == set(itertools.combinations(range(6), 2))  # every pair
    assert all(60 <= n <= 140 for n in pairs.values())  # 100 expected each (binomial sd about 10)
    ds.set_epoch(1)
    assert Counter(tuple(sorted(ds.sample_indices(i).classes)) for i in range(1500)) != pairs


def test_sample_episode_set_records_n_way_episodes(tmp_path: Path) -> None:
    src = SOURCES["ordinal", 1]
    episodes = sample_episode_set(src, 8, 2, 3, seed=4, n_way=2)
    reference = FewShotMetaDataset(src, None, 2, 3, length=8, seed=4, n_way=2)
    assert episodes.sampling["n_way"] == 2
    for i, record in enumerate(episodes.episodes):
        assert record.classes == reference.sample_indices(i).classes
        assert len(record.classes) == 2
    episodes.save(tmp_path / "episodes.json")
    loaded = EpisodeSet.load(tmp_path / "episodes.json", src)
    assert loaded.sampling["n_way"] == 2
    task = loaded.as_dataset(src)[3]
    assert task.description == reference[3].description
    assert torch.equal(task.query[0], reference[3].query[0])


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("binary", r"n_way=2 has no meaning for BINARY_CLASSIFICATION task 'binary-0': .*leave n_way=None"),
        (
            "multilabel",
            r"n_way=2 has no meaning for MULTILABEL_CLASSIFICATION task 'multilabel-0': .*"
            r"SubTaskRandomFewShotMetaDataset\(n_way_min=\.\.\., n_way_max=\.\.\.\)",
        ),
    ],
)
def test_n_way_is_refused_where_a_way_has_no_meaning(kind: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FewShotMetaDataset(SOURCES[kind, 0], None, 1, 1, n_way=2)
    with pytest.raises(ValueError, match=match):
        sample_episode_set(SOURCES[kind, 0], 2, 1, 1, n_way=2)


def test_n_way_argument_errors() -> None:
    src = SOURCES["multiclass", 0]
    with pytest.raises(ValueError, match="n_way must be >= 2, got n_way=1"):
        FewShotMetaDataset(src, None, 1, 1, n_way=1)
    with pytest.raises(TypeError, match="n_way"):
        FewShotMetaDataset(src, None, 1, 1, n_way=2.0)
    with pytest.raises(
        ValueError,
        match=r"task 'multiclass-0' has 4 usable classes \(n_way=5 needs >= 5\): the task has 4 classes; "
        r"lower n_way$",
    ):
        FewShotMetaDataset(src, None, 1, 1, n_way=5)


def test_too_few_usable_classes_for_n_way_name_the_filter() -> None:
    src = _source([30, 30, 12, 12, 3])
    with pytest.raises(
        ValueError,
        match=r"task 'toy' has 2 usable classes \(n_way=3 needs >= 3\): "
        r"filter_classes_min_samples=20 removed 2 of 5 classes with fewer than 20 examples: "
        r"'class 2' \(key 2: 12 examples\), 'class 3' .*; "
        r"1 of 5 classes have fewer than 4 examples .*'class 4'.*; lower filter_classes_min_samples .* or "
        r"lower the shots or queries or lower n_way$",
    ):
        FewShotMetaDataset(src, None, 2, 2, 20, n_way=3)
    with pytest.warns(UserWarning, match=r"1 of 5 classes have fewer than 4 examples"):
        ds = FewShotMetaDataset(src, None, 2, 2, n_way=3, length=4, seed=0)  # no filter by default
    assert ds.used_classes == [0, 1, 2, 3]
    assert all(4 not in ds.sample_indices(i).classes for i in range(4))
