"""N-way episodes assign their labels by a random permutation per episode (issue 19, finding 14).

Classic N-way K-shot episodes (Finn et al., 2017, and every peer) give the ``N`` classes of an
episode the labels ``0..N-1`` in a random order, so that a meta-learned head cannot learn which
class sits at which position. ``FewShotMetaDataset(n_way=...)`` and
``sample_episode_set(n_way=...)`` do so by default (multi-class tasks; ordinal episodes keep
the grade order); ``permute_labels=False`` gives the episodes of earlier versions, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_episode_dataset_contract import SOURCES
from torch.utils.data import DataLoader

from torchcross.data import split_classes
from torchcross.data.metadataset import EpisodeSet, FewShotMetaDataset, sample_episode_set
from torchcross.data.sources import TensorTaskSource, canonical_labels
from torchcross.tasks.task import Task, TaskDescription

NAMES = ("cat", "dog", "cow", "pig", "hen", "owl", "elk", "yak", "emu")


def _source(sizes: list[int]) -> TensorTaskSource:
    """A multi-class source whose inputs are the example ids, examples shuffled."""
    labels = np.random.default_rng(len(sizes)).permutation(np.repeat(np.arange(len(sizes)), sizes))
    d = TaskDescription("MULTICLASS_CLASSIFICATION", dict(enumerate(NAMES[: len(sizes)])), "animals")
    return TensorTaskSource(torch.arange(len(labels), dtype=torch.float32)[:, None], labels, d)


def _true_names(task: Task, source: TensorTaskSource) -> list[list[str]]:
    """The source's class name of every support and query example (inputs are example ids)."""
    labels = canonical_labels(source).reshape(-1)
    names = source.task_description.classes
    return [[names[int(labels[i])] for i in x[:, 0].long().tolist()] for x, _ in (task.support, task.query)]


def _check_permuted_episode(task: Task, source: TensorTaskSource, n_way: int, k: int, q: int) -> None:
    desc = task.description
    assert list(desc.classes) == list(range(n_way))
    assert len(set(desc.classes.values())) == n_way
    assert set(desc.classes.values()) <= set(source.task_description.classes.values())
    # (a) the support holds every label 0..n_way-1, k times each (the query q times each)
    for (_, y), per_class in ((task.support, k), (task.query, q)):
        assert torch.bincount(y, minlength=n_way).tolist() == [per_class] * n_way
    # (b) classes[label] names the true class of every example
    for (_, y), names in zip((task.support, task.query), _true_names(task, source)):
        assert [desc.classes[label] for label in y.tolist()] == names


@st.composite
def _cases(draw):
    n_classes = draw(st.integers(2, 9))
    k, q = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    sizes = draw(st.lists(st.integers(k + q, 8), min_size=n_classes, max_size=n_classes))
    n_way = draw(st.integers(2, n_classes))
    return sizes, k, q, n_way, draw(st.integers(0, 2**32)), draw(st.integers(0, 50))


@settings(max_examples=40, deadline=None)
@given(_cases())
def test_labels_are_a_permutation_and_the_description_names_each_example(case) -> None:
    sizes, k, q, n_way, seed, index = case
    src = _source(sizes)
    ds = FewShotMetaDataset(src, None, k, q, seed=seed, n_way=n_way)
    task = ds[index]
    _check_permuted_episode(task, src, n_way, k, q)
    # (d) the episode is a pure function of (seed, index): a fresh dataset gives it again
    again = FewShotMetaDataset(src, None, k, q, seed=seed, n_way=n_way)[index]
    assert again.description == task.description
    for a, b in zip((*task.support, *task.query), (*again.support, *again.query)):
        assert torch.equal(a, b)
    # the same classes as with permute_labels=False, only their order differs
    in_order = FewShotMetaDataset(src, None, k, q, seed=seed, n_way=n_way, permute_labels=False)
    assert sorted(in_order.sample_indices(index).classes) == sorted(ds.sample_indices(index).classes)


@pytest.mark.parametrize(("n_classes", "n_way"), [(4, 4), (5, 2), (6, 3)])
def test_every_class_appears_at_every_label_position(n_classes: int, n_way: int) -> None:
    # (c) fails without the permutation: labels followed the class order (class 0 was always label 0)
    src = _source([4] * n_classes)
    ds = FewShotMetaDataset(src, None, 1, 1, length=1200, seed=0, n_way=n_way)
    counts = Counter(
        (position, key) for i in range(1200) for position, key in enumerate(ds.sample_indices(i).classes)
    )
    assert set(counts) == {(p, c) for p in range(n_way) for c in range(n_classes)}
    expected = 1200 / n_classes  # each class at each position, uniformly
    assert all(0.75 * expected <= n <= 1.25 * expected for n in counts.values()), counts


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 6).flatmap(lambda c: st.tuples(st.just(c), st.integers(2, c))), st.integers(0, 2**32))
def test_any_seed_puts_every_class_at_every_label_position(ways: tuple[int, int], seed: int) -> None:
    # each (position, class) pair has probability >= 1/6 per episode: missing one in 300 is ~1e-24
    n_classes, n_way = ways
    ds = FewShotMetaDataset(_source([2] * n_classes), None, 1, 1, length=300, seed=seed, n_way=n_way)
    seen = {(p, key) for i in range(300) for p, key in enumerate(ds.sample_indices(i).classes)}
    assert seen == {(p, c) for p in range(n_way) for c in range(n_classes)}


def test_the_first_label_is_not_always_the_smallest_class() -> None:
    src = SOURCES["multiclass", 0]
    tasks = list(FewShotMetaDataset(src, None, 2, 2, length=20, seed=0, n_way=3))
    keys = {name: key for key, name in src.task_description.classes.items()}
    orders = [[keys[t.description.classes[i]] for i in range(3)] for t in tasks]
    assert any(order != sorted(order) for order in orders)
    for task in tasks:
        support_names, _ = _true_names(task, src)
        assert support_names[0] == task.description.classes[0]  # class-major: label 0 comes first


def _signature(task: Task) -> tuple:
    return (
        tuple(task.description.classes.items()),
        *(tuple(t.flatten().tolist()) for t in (*task.support, *task.query)),
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_workers_give_the_same_permuted_episodes(num_workers: int) -> None:
    # (d) the permutation comes from the episode's own generator, not from a worker's state
    src = _source([6] * 7)
    ds = FewShotMetaDataset(src, None, 2, 1, length=8, seed=5, n_way=4)
    expected = [_signature(ds[i]) for i in range(8)]
    context = multiprocessing.get_context("fork") if num_workers else None
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers, multiprocessing_context=context)
    assert [_signature(task) for task in loader] == expected
    fresh = FewShotMetaDataset(src, None, 2, 1, length=8, seed=5, n_way=4)
    assert [_signature(fresh[i]) for i in range(8)] == expected
    assert len({s[0] for s in expected}) > 1  # not one fixed label order


def _fingerprint(episodes: list) -> str:
    digest = hashlib.sha256()
    for ep in episodes:
        digest.update(np.asarray(ep.support, np.int64).tobytes())
        digest.update(np.asarray(ep.query, np.int64).tobytes())
        digest.update(repr(ep.classes).encode())
    return digest.hexdigest()


def test_permute_labels_false_gives_the_episodes_of_earlier_versions_bit_for_bit() -> None:
    # (e) fingerprints of the n_way episodes drawn before labels were permuted
    episodes = []
    for kind in ("multiclass", "ordinal"):
        for n_way in (2, 3, 4):
            ds = FewShotMetaDataset(
                SOURCES[kind, 0], None, 2, 3, length=20, seed=7, n_way=n_way, permute_labels=False
            )
            ds.set_epoch(1)
            episodes += [ds.sample_indices(i) for i in range(20)]
    assert _fingerprint(episodes) == "f0d81ec1a604c9e3aca310cb62cf12f48987ce529c3320525a31fe0a3890e2b5"
    stored = sample_episode_set(SOURCES["multiclass", 1], 10, 2, 3, seed=3, n_way=3, permute_labels=False)
    digest = hashlib.sha256()
    for r in stored.episodes:
        digest.update(repr(r.classes).encode())
        for a in (r.support, r.support_labels, r.query, r.query_labels):
            digest.update(np.asarray(a, np.int64).tobytes())
    assert digest.hexdigest() == "25afc05e07be58ba0c4a1ee8d99e46eb6bdcec1805950533944a27495fb101cd"
    assert stored.sampling["permute_labels"] is False


def test_ordinal_n_way_episodes_keep_the_grade_order() -> None:
    src = SOURCES["ordinal", 0]
    permuted = FewShotMetaDataset(src, None, 2, 2, length=30, seed=2, n_way=3)
    in_order = FewShotMetaDataset(src, None, 2, 2, length=30, seed=2, n_way=3, permute_labels=False)
    for i in range(30):
        classes = permuted.sample_indices(i).classes
        assert classes == tuple(sorted(classes)) == in_order.sample_indices(i).classes


def test_all_class_episodes_are_not_permuted() -> None:
    # permute_labels applies to n_way episodes: all-class episodes (the MedIMeta protocol's) keep key order
    for permute in (True, False):
        ds = FewShotMetaDataset(
            SOURCES["multiclass", 0], None, 2, 2, length=10, seed=0, permute_labels=permute
        )
        assert all(ds.sample_indices(i).classes == (0, 1, 2, 3) for i in range(10))
    stored = json.loads(sample_episode_set(SOURCES["multiclass", 0], 3, 2, 2, seed=0).to_json())
    assert "permute_labels" not in stored["sampling"]  # all-class episode set files are unchanged


def test_episode_sets_store_and_reload_the_permutation(tmp_path: Path) -> None:
    src = _source([8] * 6)
    episodes = sample_episode_set(src, 12, 2, 3, seed=4, n_way=3)
    assert episodes.sampling["n_way"] == 3
    assert episodes.sampling["permute_labels"] is True
    reference = FewShotMetaDataset(src, None, 2, 3, length=12, seed=4, n_way=3)
    episodes.save(tmp_path / "episodes.json")
    loaded = EpisodeSet.load(tmp_path / "episodes.json", src).as_dataset(src)
    orders = set()
    for i in range(12):
        task = loaded[i]
        _check_permuted_episode(task, src, 3, 2, 3)
        assert _signature(task) == _signature(reference[i])
        orders.add(tuple(task.description.classes.values()))
    assert any(list(order) != sorted(order, key=NAMES.index) for order in orders)


def test_class_split_parts_give_permuted_episodes_named_by_the_source() -> None:
    src = _source([5] * 9)
    _, _, test = split_classes(src, (3, 3, 3), seed=0)
    ds = FewShotMetaDataset(test, None, 1, 2, length=60, seed=0, n_way=3)
    first_labels = Counter()
    for task in ds:  # a part's inputs are the source's, so they name the source's examples
        for (_, y), names in zip((task.support, task.query), _true_names(task, src)):
            assert [task.description.classes[label] for label in y.tolist()] == names
        first_labels[task.description.classes[0]] += 1
    assert len(first_labels) == 3  # each of the part's 3 classes is label 0 in some episodes


def test_permute_labels_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"permute_labels must be True or False, got 'yes'"):
        FewShotMetaDataset(SOURCES["multiclass", 0], None, 1, 1, n_way=2, permute_labels="yes")
    with pytest.raises(TypeError, match=r"permute_labels must be True or False, got 1"):
        sample_episode_set(SOURCES["multiclass", 0], 2, 1, 1, n_way=2, permute_labels=1)
