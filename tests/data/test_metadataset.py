"""Episode datasets: exact episodes for every kind, determinism, workers, ranks, 0.0.6 compatibility."""

from __future__ import annotations

import copy
import itertools
import pickle

import numpy as np
import pytest
import torch
from data_helpers import fake_distributed
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from torchcross.data import TaskSource, TensorTaskSource, canonical_labels
from torchcross.data.metadataset.base import EpisodeMetaDataset, MetaDataset
from torchcross.data.metadataset.few_shot import FewShotMetaDataset, SubTaskRandomFewShotMetaDataset
from torchcross.data.metadataset.variable import VariableWayShotMetaDataset
from torchcross.tasks.task import Task, TaskDescription, TaskTarget

KINDS = ["multiclass", "binary", "multilabel", "ordinal"]


def make_source(kind: str, n: int = 240, seed: int = 0, get_batch: bool = True) -> TensorTaskSource:
    """Inputs ``x[i] = (i, i)``, so an episode's inputs reveal which examples it holds."""
    rng = np.random.default_rng(seed)
    if kind == "multiclass":
        d = TaskDescription(
            "MULTICLASS_CLASSIFICATION", {0: "cat", 1: "dog", 2: "cow", 3: "pig"}, "animals", "farm"
        )
        labels = rng.permutation(np.arange(n) % 4)
    elif kind == "binary":
        d = TaskDescription("BINARY_CLASSIFICATION", {0: "healthy", 1: "sick"}, "disease", "clinic")
        labels = rng.permutation((np.arange(n) % 3 == 0).astype(np.int64))
    elif kind == "multilabel":
        d = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "findings", "xray")
        labels = (rng.random((n, 3)) < np.array([0.3, 0.4, 0.5])).astype(np.int64)
    else:
        d = TaskDescription(
            "ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "moderate", 8: "severe"}, "grade", "eye"
        )
        labels = rng.permutation(np.array([1, 4, 6, 8])[np.arange(n) % 4])
    inputs = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2)
    src = TensorTaskSource(inputs, labels, d)
    if not get_batch:
        src = _NoBatch(src)
    return src


class _NoBatch(TaskSource):
    """A source without ``get_batch`` (episodes fall back to ``source[i]``)."""

    def __init__(self, inner: TensorTaskSource) -> None:
        self.inner, self.task_description, self.labels = inner, inner.task_description, inner.labels

    def __getitem__(self, i):
        return self.inner[i]

    def __len__(self) -> int:
        return len(self.inner)


def check_task(task: Task, source, episode, k: int | None, q: int | None) -> None:
    """The episode's tensors hold exactly the sampled examples with consistent labels."""
    src_desc, desc = source.task_description, task.description
    labels = canonical_labels(source)
    assert (desc.task_identifier, desc.domain_identifier, desc.task_target) == (
        src_desc.task_identifier,
        src_desc.domain_identifier,
        src_desc.task_target,
    )
    assert list(desc.classes) == list(range(len(episode.classes)))
    for (x, y), idx in ((task.support, episode.support), (task.query, episode.query)):
        assert x[:, 0].long().tolist() == idx.tolist()
        assert y.dtype == torch.int64
        assert len(y) == len(idx)
        orig = labels[idx]
        if desc.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            assert torch.equal(y, torch.from_numpy(orig[:, list(episode.classes)]))
            assert [desc.classes[i] for i in range(y.shape[1])] == [
                src_desc.classes[c] for c in episode.classes
            ]
        elif desc.task_target is TaskTarget.BINARY_CLASSIFICATION:
            assert y.shape == (len(idx), 1)
            assert torch.equal(y, torch.from_numpy(orig))
        else:
            assert [desc.classes[int(i)] for i in y] == [src_desc.classes[int(c)] for c in orig]
    assert not set(episode.support.tolist()) & set(episode.query.tolist())
    if k is None:
        return
    if desc.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
        for (_, y), quota in ((task.support, k), (task.query, q)):
            assert (y.sum(0) >= quota).all()
            assert ((1 - y).sum(0) >= quota).all()
    else:
        n_way = desc.num_classes
        assert task.support[1].flatten().tolist() == np.repeat(np.arange(n_way), k).tolist()
        assert task.query[1].flatten().tolist() == np.repeat(np.arange(n_way), q).tolist()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("get_batch", [True, False])
def test_few_shot_episodes_are_exact(kind, get_batch) -> None:
    src = make_source(kind, get_batch=get_batch)
    ds = FewShotMetaDataset(src, None, 3, 4, filter_classes_min_samples=0, length=5, seed=7)
    for i in range(5):
        check_task(ds[i], src, ds.sample_indices(i), 3, 4)
    assert ds[0].description.num_classes == (3 if kind == "multilabel" else 2 if kind == "binary" else 4)


@pytest.mark.parametrize("kind", KINDS)
@given(seed=st.integers(0, 2**63 - 1), index=st.integers(0, 10**9), k=st.integers(1, 4), q=st.integers(0, 5))
def test_episodes_are_pure_functions_of_seed_and_index(kind, seed, index, k, q) -> None:
    src = _SOURCES[kind]
    a = FewShotMetaDataset(src, None, k, q, filter_classes_min_samples=0, seed=seed)
    b = FewShotMetaDataset(src, None, k, q, filter_classes_min_samples=0, seed=seed)
    ep_a, ep_b = a.sample_indices(index), b.sample_indices(index)
    assert ep_a.support.tolist() == ep_b.support.tolist()
    assert ep_a.query.tolist() == ep_b.query.tolist()
    check_task(a[index], src, ep_a, k, q)

    def window(ds: FewShotMetaDataset, start: int) -> list:
        # four episodes: two small episodes (1 shot, no query) may coincide by chance, four hardly
        return [
            (e.support.tolist(), e.query.tolist()) for e in map(ds.sample_indices, range(start, start + 4))
        ]

    other_seed = FewShotMetaDataset(src, None, k, q, 0, seed=seed ^ 1)
    assert window(a, index) != window(a, index + 4)
    assert window(a, index) != window(other_seed, index)


_SOURCES = {kind: make_source(kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
@given(seed=st.integers(0, 2**32), data=st.data())
def test_sub_task_episodes(kind, seed, data) -> None:
    src = _SOURCES[kind]
    kmin = data.draw(st.integers(1, 3))
    kmax = data.draw(st.integers(kmin, 5))
    ds = SubTaskRandomFewShotMetaDataset(
        src,
        n_support_samples_per_class_min=kmin,
        n_support_samples_per_class_max=kmax,
        n_query_samples_per_class=3,
        filter_classes_min_samples=0,
        length=4,
        seed=seed,
    )
    for i in range(4):
        ep = ds.sample_indices(i)
        task = ds[i]
        check_task(task, src, ep, None, None)
        n_way = len(ep.classes)
        assert n_way == 2 if kind == "binary" else 2 <= n_way <= len(src.task_description.classes)
        if kind in ("ordinal", "multilabel", "binary"):
            assert list(ep.classes) == sorted(ep.classes)
        if kind != "multilabel":
            counts = np.bincount(task.support[1].flatten().numpy())
            assert len(set(counts.tolist())) == 1
            assert kmin <= counts[0] <= kmax
            assert np.bincount(task.query[1].flatten().numpy()).tolist() == [3] * n_way


def test_multiclass_sub_tasks_permute_labels() -> None:
    ds = SubTaskRandomFewShotMetaDataset(
        _SOURCES["multiclass"], filter_classes_min_samples=0, length=30, seed=0
    )
    orders = {ds.sample_indices(i).classes for i in range(30)}
    assert any(list(c) != sorted(c) for c in orders)
    fixed = SubTaskRandomFewShotMetaDataset(
        _SOURCES["multiclass"], filter_classes_min_samples=0, n_classes_min=3, n_classes_max=3, seed=0
    )
    assert all(len(fixed.sample_indices(i).classes) == 3 for i in range(10))


@pytest.mark.parametrize("kind", ["multiclass", "binary", "ordinal"])
@given(seed=st.integers(0, 2**32))
def test_variable_way_shot_episodes(kind, seed) -> None:
    src = _SOURCES[kind]
    ds = VariableWayShotMetaDataset(src, min_ways=2, max_ways=3, max_support_size=20, seed=seed, length=3)
    for i in range(3):
        ep, task = ds.sample_indices(i), ds[i]
        check_task(task, src, ep, None, None)
        assert 2 <= len(ep.classes) <= 3
        assert len(ep.support) <= 20
        q = np.bincount(task.query[1].flatten().numpy())
        assert len(set(q.tolist())) == 1
        assert 1 <= q[0] <= 10
        assert (np.bincount(task.support[1].flatten().numpy(), minlength=len(ep.classes)) >= 1).all()


def test_variable_way_shot_refuses_multilabel() -> None:
    with pytest.raises(ValueError, match="'findings' is multi-label"):
        VariableWayShotMetaDataset(_SOURCES["multilabel"])


def _key(pairs) -> list:
    return [(i, y.tolist()) for i, y in pairs]


@pytest.mark.parametrize("kind", KINDS)
def test_iteration_equals_random_access_and_endless_mode(kind) -> None:
    src = _SOURCES[kind]
    ds = FewShotMetaDataset(src, None, 2, 2, 0, length=6, output_indices=True, seed=3)
    assert [_key(t.support) for t in ds] == [_key(ds[i].support) for i in range(6)]
    assert [_key(t.query) for t in ds] == [_key(ds[i].query) for i in range(6)]
    assert _key(ds[-1].support) == _key(ds[5].support)
    assert len(ds) == 6
    with pytest.raises(IndexError, match="out of range"):
        ds[6]
    endless = FewShotMetaDataset(src, None, 2, 2, 0, output_indices=True, seed=3)
    got = [_key(t.support) for t in itertools.islice(endless, 8)]
    assert got == [_key(ds[i].support) for i in range(6)] + [
        _key(endless[6].support),
        _key(endless[7].support),
    ]
    for error in (TypeError, ValueError):  # 0.0.6 raised ValueError; Python's own protocol wants TypeError
        with pytest.raises(error, match="endless"):
            len(endless)
    with pytest.raises(IndexError, match=">= 0"):
        endless[-1]
    with pytest.raises(TypeError, match="episode index must be an int"):
        ds["0"]


def _one_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@pytest.mark.parametrize("get_batch", [True, False])
@pytest.mark.parametrize("num_workers", [0, 1])
def test_support_and_query_share_one_storage(get_batch, num_workers) -> None:
    # one storage for both inputs and one for both labels: a Task crosses a DataLoader
    # worker boundary with two shared-memory segments (one per storage), not three or four
    ds = FewShotMetaDataset(make_source("binary", get_batch=get_batch), None, 3, 4, 0, length=2, seed=5)
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers)
    for i, task in enumerate(loader):
        assert _one_storage(task.support[0], task.query[0])
        assert _one_storage(task.support[1], task.query[1])
        assert not _one_storage(task.support[0], task.support[1])
        check_task(task, ds.task_source, ds.sample_indices(i), 3, 4)


@pytest.mark.parametrize("kind", KINDS)
def test_ranks_get_disjoint_shares(kind, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = FewShotMetaDataset(_SOURCES[kind], None, 2, 2, 0, length=10, output_indices=True, seed=5)
    everything = [repr(ds[i].support) for i in range(10)]
    shares = []
    for rank in range(3):
        fake_distributed(monkeypatch, rank, 3)
        shares.append([repr(t.support) for t in ds])
    assert sorted(x for share in shares for x in share) == sorted(everything)
    assert shares[1] == everything[1::3]


def test_ranks_times_workers_shard_without_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = FewShotMetaDataset(_SOURCES["multilabel"], None, 2, 2, 0, length=12, output_indices=True, seed=5)
    everything = [_key(ds[i].support) for i in range(12)]
    fake_distributed(monkeypatch, 1, 2)
    got = [_key(t.support) for t in DataLoader(ds, batch_size=None, num_workers=2)]
    # rank 1 of 2 takes episodes 1, 3, 5, ... whatever its number of workers (round-robin between them)
    assert got == [everything[i] for i in (1, 3, 5, 7, 9, 11)]


def test_seed_none_draws_and_keeps_a_seed() -> None:
    a = FewShotMetaDataset(_SOURCES["multiclass"], None, 2, 2, 0, length=3)
    b = FewShotMetaDataset(_SOURCES["multiclass"], None, 2, 2, 0, length=3, seed=a.seed)
    assert isinstance(a.seed, int)
    assert a.seed >= 0
    assert a.sample_indices(2).support.tolist() == b.sample_indices(2).support.tolist()
    assert "seed=" in repr(a)


def test_set_epoch_draws_new_reproducible_episodes() -> None:
    ds = FewShotMetaDataset(_SOURCES["binary"], None, 2, 2, 0, length=3, seed=0)
    first = ds.sample_indices(0).support.tolist()
    ds.set_epoch(1)
    second = ds.sample_indices(0).support.tolist()
    assert first != second
    assert ds.sampling_parameters()["epoch"] == 1
    ds.set_epoch(0)
    assert ds.sample_indices(0).support.tolist() == first
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)


@pytest.mark.parametrize("kind", KINDS)
def test_output_indices_and_collate_fn_like_0_0_6(kind) -> None:
    src = _SOURCES[kind]
    # positional order as medimeta 0.0.6 calls it: (task_source, collate_fn, n_support, n_query, ...)
    ds = FewShotMetaDataset(
        src, None, 2, 3, length=2, output_indices=True, filter_classes_min_samples=0, seed=1
    )
    tasks = [t for t in ds]
    ep = ds.sample_indices(0)
    support = tasks[0].support
    assert isinstance(support, list)
    assert [i for i, _ in support] == ep.support.tolist()
    assert all(isinstance(i, int) and isinstance(y, torch.Tensor) for i, y in support)
    stacked = ds.__class__(src, None, 2, 3, length=2, filter_classes_min_samples=0, seed=1)[0]
    assert torch.equal(torch.stack([y for _, y in support]), stacked.support[1])
    restored = pickle.loads(pickle.dumps(tasks))
    assert [i for i, _ in restored[0].support] == ep.support.tolist()
    assert restored[0].description == tasks[0].description
    # a user collate function receives (input, label) pairs
    seen = []

    def collate(pairs):
        seen.append(len(pairs))
        return pairs

    t = FewShotMetaDataset(src, collate, 2, 3, filter_classes_min_samples=0, seed=1)[0]
    assert isinstance(t.support, list)
    assert torch.equal(t.support[0][0], stacked.support[0][0])
    assert seen
    # collate_fn with output_indices gets the (index, label) pairs
    t = FewShotMetaDataset(src, lambda p: ("collated", p), 2, 3, 0, output_indices=True, seed=1)[0]
    assert t.support[0] == "collated"
    assert t.support[1][0][0] == ep.support[0]


def test_filter_warns_naming_task_and_classes() -> None:
    labels = np.array([0] * 30 + [1] * 30 + [2] * 30 + [3] * 4)
    d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c", 3: "rare"}, "skin")
    src = TensorTaskSource(torch.zeros(len(labels), 1), labels, d)
    with pytest.warns(
        UserWarning,
        match=r"task 'skin': filter_classes_min_samples=10 removed 1 of 4 classes with fewer than 10 "
        r"examples: 'rare' \(key 3: 4 examples\)$",
    ):
        ds = FewShotMetaDataset(src, None, 2, 2, filter_classes_min_samples=10, seed=0)
    assert ds.used_classes == [0, 1, 2]
    assert dict(ds[0].description.classes) == {0: "a", 1: "b", 2: "c"}
    with pytest.warns(
        UserWarning,
        match=r"task 'skin': 1 of 4 classes have fewer than 15 examples \(an episode needs "
        r"n_support_samples_per_class \+ n_query_samples_per_class = 15\): 'rare'",
    ):
        FewShotMetaDataset(src, None, 5, 10, seed=0)  # no filter by default: only 'rare' is too small


def test_errors_name_the_filter_that_removed_the_classes() -> None:
    labels = np.array([0] * 30 + [1] * 30 + [2] * 30 + [3] * 4)
    d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c", 3: "rare"}, "skin")
    src = TensorTaskSource(torch.zeros(len(labels), 1), labels, d)
    with pytest.raises(
        ValueError,
        match=r"task 'skin' has 0 usable classes \(needs >= 2\): filter_classes_min_samples=50 removed 3 "
        r"of 4 classes with fewer than 50 examples: 'a' \(key 0: 30 examples\), 'b' .*; "
        r"1 of 4 classes have fewer than 15 examples .*'rare'.*; "
        r"lower filter_classes_min_samples \(the default, 0, filters nothing\) "
        r"or lower the shots or queries$",
    ):
        FewShotMetaDataset(src, None, 5, 10, 50, seed=0)
    with pytest.raises(
        ValueError,
        match=r"task 'skin' has 0 usable classes \(needs >= 2\): 4 of 4 classes have fewer than 41 examples "
        r"\(an episode needs .* = 41\).*; lower the shots or queries$",
    ):
        FewShotMetaDataset(src, None, 1, 40, seed=0)
    binary = TensorTaskSource(
        torch.zeros(40, 1), np.arange(40) % 2, TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "p"}, "b")
    )
    with pytest.raises(
        ValueError,
        match=r"binary task 'b' has 20 positives and 20 negatives; filter_classes_min_samples=30 asks for "
        r">= 30; lower filter_classes_min_samples",
    ):
        FewShotMetaDataset(binary, None, 2, 2, 30)
    with pytest.raises(
        ValueError, match=r"needs n_support_samples_per_class \+ n_query_samples_per_class = 21 of each"
    ):
        FewShotMetaDataset(binary, None, 1, 20)


def test_too_few_usable_classes_raise_for_every_kind() -> None:
    binary = TensorTaskSource(
        torch.zeros(20, 1),
        [1] * 18 + [0] * 2,
        TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "p"}, "bin"),
    )
    with pytest.raises(ValueError, match="binary task 'bin' has 18 positives and 2 negatives"):
        FewShotMetaDataset(binary, None, 2, 2, 0)
    ml = TensorTaskSource(
        torch.zeros(40, 1),
        np.stack([np.arange(40) % 2, np.zeros(40, dtype=int)], 1),
        TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "never"}, "ml"),
    )
    with pytest.raises(ValueError, match=r"'never' \(key 1: 0 positives, 40 negatives\)"):
        FewShotMetaDataset(ml, None, 2, 2, 0)


def test_errors_in_user_transforms_propagate() -> None:
    class Broken(TaskSource):
        def __init__(self):
            self.task_description = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "p"}, "broken")
            self.labels = np.arange(20) % 2

        def __getitem__(self, i):
            raise ValueError(f"transform failed on item {i}")

        def __len__(self):
            return 20

    ds = FewShotMetaDataset(Broken(), None, 2, 2, 0, length=3, seed=0)
    with pytest.raises(ValueError, match="transform failed"):
        ds[0]
    with pytest.raises(ValueError, match="transform failed"):
        next(iter(ds))
    assert len(list(FewShotMetaDataset(Broken(), None, 2, 2, 0, length=3, output_indices=True))) == 3


def test_metadataset_subclass_as_medimeta_writes_it() -> None:
    class Pickled(MetaDataset):  # like medimeta.PickledMedIMetaTaskDataset: no super().__init__()
        def __init__(self, tasks):
            self.task_list = tasks

        def __getitem__(self, index):
            return self.task_list[index]

        def __len__(self):
            return len(self.task_list)

    tasks = list(FewShotMetaDataset(_SOURCES["binary"], None, 1, 1, 0, length=2, output_indices=True, seed=0))
    ds = Pickled(tasks)
    assert len(ds) == 2
    assert ds[1] is tasks[1]
    assert len(DataLoader(ds, batch_size=None)) == 2
    with pytest.raises(TypeError, match="Can't instantiate abstract class MetaDataset"):
        MetaDataset()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_support_samples_per_class": 0}, ValueError, "n_support_samples_per_class must be >= 1"),
        ({"n_query_samples_per_class": -1}, ValueError, "n_query_samples_per_class"),
        ({"filter_classes_min_samples": 1.5}, TypeError, "filter_classes_min_samples"),
        ({"length": 0}, ValueError, "length must be >= 1"),
        ({"seed": -3}, ValueError, "seed"),
        ({"seed": "x"}, TypeError, "seed"),
        ({"collate_fn": 3}, TypeError, "collate_fn"),
        ({"output_indices": 1}, TypeError, "output_indices"),
        ({"max_attempts": 0}, ValueError, "max_attempts"),
    ],
)
def test_few_shot_argument_errors(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        FewShotMetaDataset(_SOURCES["multiclass"], **{"filter_classes_min_samples": 0, **kwargs})


def test_other_argument_errors() -> None:
    with pytest.raises(TypeError, match="task_source must be a TaskSource"):
        FewShotMetaDataset(object())
    with pytest.raises(ValueError, match="n_support_samples_per_class_max"):
        SubTaskRandomFewShotMetaDataset(
            _SOURCES["multiclass"], n_support_samples_per_class_min=3, n_support_samples_per_class_max=2
        )
    with pytest.raises(ValueError, match="n_classes_min=5 exceeds"):
        SubTaskRandomFewShotMetaDataset(_SOURCES["multiclass"], filter_classes_min_samples=0, n_classes_min=5)
    with pytest.raises(ValueError, match="max_ways"):
        VariableWayShotMetaDataset(_SOURCES["multiclass"], min_ways=5, max_ways=4)
    with pytest.raises(ValueError, match="max_support_size"):
        VariableWayShotMetaDataset(_SOURCES["multiclass"], max_ways=10, max_support_size=5)


def test_episode_dataset_is_abstract_and_reports_parameters() -> None:
    with pytest.raises(TypeError, match="Can't instantiate abstract class EpisodeMetaDataset"):
        EpisodeMetaDataset(_SOURCES["binary"])
    ds = SubTaskRandomFewShotMetaDataset(_SOURCES["binary"], filter_classes_min_samples=0, seed=4, length=2)
    params = ds.sampling_parameters()
    assert params["rule"] == "SubTaskRandomFewShotMetaDataset"
    assert params["seed"] == 4
    assert "n_support_samples_per_class" not in params
    assert params["n_support_samples_per_class_max"] == 10
    assert ds.task_target is TaskTarget.BINARY_CLASSIFICATION


class _IndexOnly(FewShotMetaDataset):
    """Iteration yields the episode indices it visits (to check the sharding itself)."""

    def __getitem__(self, index):
        return self._check_index(index)


@given(
    length=st.integers(1, 40),
    world_size=st.integers(1, 4),
    num_workers=st.integers(1, 4),
)
def test_workers_times_ranks_cover_every_episode_once(length, world_size, num_workers) -> None:
    ds = _IndexOnly(_SOURCES["binary"], None, 1, 1, 0, length=length, seed=0)
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        for rank in range(world_size):
            fake_distributed(mp, rank, world_size)
            for worker in range(num_workers):
                info = type("Info", (), {"id": worker, "num_workers": num_workers})()
                mp.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
                seen += list(copy.copy(ds))  # each worker iterates its own copy
    assert sorted(seen) == list(range(length))
