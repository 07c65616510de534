"""The contract every episode dataset keeps, checked on each of them (as torchvision's datasets_utils does).

Each dataset in :data:`CASES` is built over small in-memory sources of every task kind it
supports and must give:

* episodes of the configured size (shots and queries per class, ways),
* disjoint support and query sets holding the labels of the examples they contain,
* labels in the canonical form of the episode's own (relabelled) description,
* the same episodes for the same seed and other episodes for another seed,
* the same episodes with 0 and 2 DataLoader workers,
* a state that round-trips (``state_dict``/``load_state_dict``, ``set_epoch``, pickling):
  resuming mid-stream gives what the uninterrupted stream gives (as torchdata's
  ``run_test_save_load_state`` checks),
* a ``len()`` that agrees with iteration, and shards (ranks) that cover every episode once.

Every source's inputs are the global ids ``offset + i`` of its examples, so an episode's
inputs reveal which examples it holds and which source they came from.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data_helpers import fake_distributed
from torch.utils.data import DataLoader

from torchcross.data.interleave import InterleaveDataset, RandomInterleaveDataset
from torchcross.data.metadataset import (
    EpisodeSet,
    FewShotMetaDataset,
    SubTaskRandomFewShotMetaDataset,
    VariableWayShotMetaDataset,
    sample_episode_set,
)
from torchcross.data.multitask import MultiTaskEpisodeSampler
from torchcross.data.sources import TensorTaskSource, canonical_labels
from torchcross.data.stream import StreamLoader
from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import Task, TaskDescription, TaskTarget

KINDS = ("multiclass", "binary", "multilabel", "ordinal")
SINGLE_LABEL = ("multiclass", "binary", "ordinal")
LENGTH = 6  # episodes (meta-batches for the multi-task sampler) per dataset
N = 48  # examples per source


# -- sources ----------------------------------------------------------------------------------------


def _description(kind: str, name: str) -> TaskDescription:
    if kind == "multiclass":
        return TaskDescription(
            "MULTICLASS_CLASSIFICATION", {0: "cat", 1: "dog", 2: "cow", 3: "pig"}, name, "farm"
        )
    if kind == "binary":
        return TaskDescription("BINARY_CLASSIFICATION", {0: "healthy", 1: "sick"}, name, "clinic")
    if kind == "multilabel":
        return TaskDescription("MULTILABEL_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, name, "xray")
    return TaskDescription(
        "ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "moderate", 8: "severe"}, name, "eye"
    )


def make_source(kind: str, part: int, n: int = N) -> TensorTaskSource:
    """Source ``part`` of a kind: task ``"<kind>-<part>"``, inputs ``1000 * part + i``."""
    rng = np.random.default_rng([part, KINDS.index(kind)])
    d = _description(kind, f"{kind}-{part}")
    if kind == "multilabel":
        labels = (rng.random((n, 3)) < np.array([0.3, 0.4, 0.5])).astype(np.int64)
    elif kind == "binary":
        labels = rng.permutation((np.arange(n) % 3 == 0).astype(np.int64))
    else:
        labels = rng.permutation(np.asarray(d.class_keys)[np.arange(n) % 4])
    inputs = torch.arange(1000 * part, 1000 * part + n, dtype=torch.float32)[:, None]
    return TensorTaskSource(inputs, labels, d)


SOURCES = {(kind, part): make_source(kind, part) for kind in KINDS for part in (0, 1)}
BY_ID = {src.task_description.task_identifier: src for src in SOURCES.values()}


# -- what an episode must hold ----------------------------------------------------------------------


@dataclass(frozen=True)
class Shots:
    """Fixed-shot rules: equal shots per class in ``support``, ``query`` per class, ``ways`` classes.

    Multi-label: at least that many positives and negatives per label.
    """

    support: tuple[int, int]
    query: int
    ways: tuple[int, int | None] = (2, None)  # None: every class of the source


@dataclass(frozen=True)
class VariableShots:
    """The variable-way variable-shot rule: a balanced query, an imbalanced, bounded support."""

    ways: tuple[int, int]
    max_query_per_class: int
    max_support_size: int


def _ids(x: torch.Tensor) -> list[int]:
    return x[:, 0].long().tolist()


def check_episode(task: Task, rule: Shots | VariableShots) -> None:
    """Disjoint sets holding the source's examples, canonical labels and sizes per ``rule``."""
    assert isinstance(task, Task)
    desc = task.description
    src = BY_ID[desc.task_identifier]
    src_desc, kind = src.task_description, desc.task_target
    assert (desc.domain_identifier, kind) == (src_desc.domain_identifier, src_desc.task_target)
    n_way = desc.num_classes
    assert list(desc.classes) == list(range(n_way))  # relabelled to 0..k-1
    names_to_key = {name: key for key, name in src_desc.classes.items()}
    episode_keys = [names_to_key[desc.classes[i]] for i in range(n_way)]
    if kind is TaskTarget.BINARY_CLASSIFICATION:
        assert desc == src_desc  # binary descriptions are kept as they are
    if kind is TaskTarget.ORDINAL_REGRESSION:
        assert episode_keys == sorted(episode_keys)  # ordinal episodes keep the order of the grades
    offset = 1000 * int(desc.task_identifier.rsplit("-", 1)[1])
    source_labels = canonical_labels(src)
    ids = {}
    for name, (x, y) in (("support", task.support), ("query", task.query)):
        idx = np.array(_ids(x), dtype=np.int64) - offset
        assert ((idx >= 0) & (idx < len(src))).all()
        assert len(set(idx.tolist())) == len(idx), f"{name} repeats an example"
        ids[name] = set(idx.tolist())
        assert y.dtype == torch.int64
        assert np.array_equal(normalize_labels(y, desc), y.numpy())  # canonical for the episode's kind
        orig = source_labels[idx]
        if kind is TaskTarget.MULTILABEL_CLASSIFICATION:
            assert y.shape == (len(idx), n_way)
            assert np.array_equal(y.numpy(), orig[:, episode_keys]), f"{name} labels do not match"
        elif kind is TaskTarget.BINARY_CLASSIFICATION:
            assert y.shape == (len(idx), 1)
            assert np.array_equal(y.numpy(), orig), f"{name} labels do not match"
        else:
            assert y.shape == (len(idx),)
            assert [episode_keys[i] for i in y.tolist()] == orig.tolist(), f"{name} labels do not match"
    assert not ids["support"] & ids["query"], "support and query share examples"
    check_sizes(task, rule, len(src_desc.classes))


def check_sizes(task: Task, rule: Shots | VariableShots, source_ways: int) -> None:
    (_, sup_y), (_, qry_y) = task.support, task.query
    n_way = task.description.num_classes
    lo, hi = rule.ways
    assert lo <= n_way <= (source_ways if hi is None else hi), f"{n_way} ways"
    if isinstance(rule, Shots) and rule.ways[1] is None:
        assert n_way == source_ways, f"{n_way} ways"
    if task.description.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
        assert isinstance(rule, Shots)
        for y, quota in ((sup_y, rule.support[0]), (qry_y, rule.query)):
            assert (y.sum(0) >= quota).all()
            assert ((1 - y).sum(0) >= quota).all()
        return
    sup = np.bincount(sup_y.flatten().numpy(), minlength=n_way)
    qry = np.bincount(qry_y.flatten().numpy(), minlength=n_way)
    assert len(sup) == len(qry) == n_way
    if isinstance(rule, Shots):
        assert len(set(sup.tolist())) == 1
        assert rule.support[0] <= sup[0] <= rule.support[1]
        assert qry.tolist() == [rule.query] * n_way
    else:
        assert len(set(qry.tolist())) == 1
        assert 1 <= qry[0] <= rule.max_query_per_class
        assert (sup >= 1).all()
        assert sup.sum() <= rule.max_support_size


# -- the datasets under contract --------------------------------------------------------------------

FEW_SHOT = Shots((2, 2), 2)
N_WAY = Shots((2, 2), 2, (3, 3))  # 3 of the sources' 4 classes
SUB_TASK = Shots((1, 3), 2, (2, 3))
WAY_KINDS = ("multiclass", "ordinal")  # the kinds with N-way episodes
VARIABLE = VariableShots((2, 3), 3, 12)


def few_shot(kind: str, seed: int, part: int = 0) -> FewShotMetaDataset:
    return FewShotMetaDataset(SOURCES[kind, part], None, 2, 2, 0, length=LENGTH, seed=seed)


def few_shot_n_way(kind: str, seed: int, part: int = 0) -> FewShotMetaDataset:
    return FewShotMetaDataset(SOURCES[kind, part], None, 2, 2, length=LENGTH, seed=seed, n_way=3)


def sub_task(kind: str, seed: int, part: int = 0) -> SubTaskRandomFewShotMetaDataset:
    return SubTaskRandomFewShotMetaDataset(
        SOURCES[kind, part],
        n_support_samples_per_class_min=1,
        n_support_samples_per_class_max=3,
        n_query_samples_per_class=2,
        filter_classes_min_samples=0,
        n_classes_max=3,
        length=LENGTH,
        seed=seed,
    )


def variable(kind: str, seed: int, part: int = 0) -> VariableWayShotMetaDataset:
    return VariableWayShotMetaDataset(
        SOURCES[kind, part],
        min_ways=2,
        max_ways=3,
        max_query_per_class=3,
        max_support_size=12,
        max_support_per_class=5,
        length=LENGTH,
        seed=seed,
    )


def fixed(kind: str, seed: int) -> Any:
    """Fixed-shot episodes saved to JSON, loaded back and read from the source."""
    src = SOURCES[kind, 0]
    episodes = sample_episode_set(src, LENGTH, 2, 2, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "episodes.json"
        episodes.save(path)
        return EpisodeSet.load(path, src).as_dataset(src)


def fixed_n_way(kind: str, seed: int) -> Any:
    """N-way episodes saved to JSON, loaded back and read from the source."""
    src = SOURCES[kind, 0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "episodes.json"
        sample_episode_set(src, LENGTH, 2, 2, seed=seed, n_way=3).save(path)
        return EpisodeSet.load(path, src).as_dataset(src)


def fixed_from_sub_tasks(kind: str, seed: int) -> Any:
    return EpisodeSet.from_dataset(sub_task(kind, seed)).as_dataset(SOURCES[kind, 0])


def members(kind: str, seed: int) -> list[Any]:
    """Two episode datasets over two sources of one kind, with different rules."""
    second = variable if kind != "multilabel" else sub_task
    return [few_shot(kind, seed, 0), second(kind, seed + 1, 1)]


def member_rules(kind: str) -> dict[str, Shots | VariableShots]:
    return {f"{kind}-0": FEW_SHOT, f"{kind}-1": VARIABLE if kind != "multilabel" else SUB_TASK}


@dataclass(frozen=True)
class Case:
    """One episode dataset under contract and what it supports.

    Attributes:
        build: ``(kind, seed) -> dataset``.
        rules: ``kind -> {task identifier: rule}`` for the episodes it yields.
        kinds: the task kinds it accepts.
        map_style: ``dataset[i]`` gives item ``i`` of the iteration.
        epochs: has ``set_epoch`` (another epoch, other episodes).
        state_dict: has ``state_dict``/``load_state_dict`` (mid-stream resume).
        worker_order: a DataLoader with workers yields the items in the same order (not just the same set).
        sharded: splits itself across ``torch.distributed`` ranks.
        meta_batches: yields lists of episodes, not single episodes.
    """

    build: Callable[[str, int], Any]
    rules: Callable[[str], dict[str, Shots | VariableShots]]
    kinds: tuple[str, ...] = KINDS
    map_style: bool = True
    epochs: bool = True
    state_dict: bool = False
    worker_order: bool = True
    sharded: bool = True
    meta_batches: bool = False


def _one_rule(rule: Shots | VariableShots) -> Callable[[str], dict[str, Shots | VariableShots]]:
    return lambda kind: {f"{kind}-0": rule}


CASES: dict[str, Case] = {
    "FewShotMetaDataset": Case(few_shot, _one_rule(FEW_SHOT)),
    "FewShotMetaDataset-n_way": Case(few_shot_n_way, _one_rule(N_WAY), kinds=WAY_KINDS),
    "SubTaskRandomFewShotMetaDataset": Case(sub_task, _one_rule(SUB_TASK)),
    "VariableWayShotMetaDataset": Case(variable, _one_rule(VARIABLE), kinds=SINGLE_LABEL),
    "FixedEpisodeMetaDataset": Case(fixed, _one_rule(FEW_SHOT), epochs=False, sharded=False),
    "FixedEpisodeMetaDataset-n_way": Case(
        fixed_n_way, _one_rule(N_WAY), kinds=WAY_KINDS, epochs=False, sharded=False
    ),
    "FixedEpisodeMetaDataset-sub-tasks": Case(
        fixed_from_sub_tasks, _one_rule(SUB_TASK), epochs=False, sharded=False
    ),
    "MultiTaskEpisodeSampler-epoch": Case(
        lambda kind, seed: MultiTaskEpisodeSampler(members(kind, seed), 2, seed=seed),
        member_rules,
        map_style=False,
        state_dict=True,
        meta_batches=True,
    ),
    "MultiTaskEpisodeSampler-infinite": Case(
        lambda kind, seed: MultiTaskEpisodeSampler(
            members(kind, seed), 3, mode="infinite", length=LENGTH, weighting="uniform", seed=seed
        ),
        member_rules,
        map_style=False,
        state_dict=True,
        meta_batches=True,
    ),
    "InterleaveDataset": Case(
        lambda kind, seed: InterleaveDataset(members(kind, seed)),
        member_rules,
        map_style=False,
        worker_order=False,
    ),
    "RandomInterleaveDataset": Case(
        lambda kind, seed: RandomInterleaveDataset(members(kind, seed), seed=seed),
        member_rules,
        map_style=False,
        worker_order=False,
    ),
}

PAIRS = [(name, kind) for name, case in CASES.items() for kind in case.kinds]


def _cases(flag: str) -> list[str]:
    return [name for name, case in CASES.items() if getattr(case, flag)]


def episodes(item: Any, case: Case) -> list[Task]:
    """The episodes of one yielded item (a meta-batch holds several)."""
    return list(item) if case.meta_batches else [item]


def signature(item: Any, case: Case) -> tuple:
    """A comparable fingerprint of an item: which examples, which labels, which classes."""
    return tuple(
        (
            t.description.task_identifier,
            tuple(t.description.classes.items()),
            tuple(_ids(t.support[0])),
            tuple(t.support[1].flatten().tolist()),
            tuple(_ids(t.query[0])),
            tuple(t.query[1].flatten().tolist()),
        )
        for t in episodes(item, case)
    )


def stream(dataset: Any, case: Case) -> list[tuple]:
    return [signature(item, case) for item in dataset]


# -- the contract -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), PAIRS)
def test_episodes_have_the_configured_sizes_disjoint_sets_and_canonical_labels(name: str, kind: str) -> None:
    case = CASES[name]
    rules = case.rules(kind)
    items = list(case.build(kind, 0))
    tasks = [t for item in items for t in episodes(item, case)]
    assert {t.description.task_identifier for t in tasks} == set(rules)  # every member is drawn from
    for task in tasks:
        check_episode(task, rules[task.description.task_identifier])


@pytest.mark.parametrize(("name", "kind"), PAIRS)
def test_same_seed_same_episodes_other_seed_other_episodes(name: str, kind: str) -> None:
    case = CASES[name]
    first = stream(case.build(kind, 0), case)
    assert stream(case.build(kind, 0), case) == first
    assert stream(case.build(kind, 1), case) != first
    dataset = case.build(kind, 0)
    assert stream(dataset, case) == stream(dataset, case)  # iterating again gives the same epoch


@pytest.mark.parametrize(("name", "kind"), PAIRS)
def test_len_agrees_with_iteration_and_random_access(name: str, kind: str) -> None:
    case = CASES[name]
    dataset = case.build(kind, 0)
    items = stream(dataset, case)
    assert len(dataset) == len(items)
    if case.map_style:
        assert [signature(dataset[i], case) for i in range(len(dataset))] == items
        assert signature(dataset[-1], case) == items[-1]


@pytest.mark.parametrize(("name", "kind"), [(n, k) for n, k in PAIRS if CASES[n].epochs])
def test_set_epoch_round_trips(name: str, kind: str) -> None:
    case = CASES[name]
    dataset = case.build(kind, 0)
    epoch0 = stream(dataset, case)
    dataset.set_epoch(1)
    epoch1 = stream(dataset, case)
    assert epoch1 != epoch0
    fresh = case.build(kind, 0)  # a checkpoint of an epoch is its number
    fresh.set_epoch(1)
    assert stream(fresh, case) == epoch1
    assert stream(pickle.loads(pickle.dumps(dataset)), case) == epoch1  # e.g. for spawned workers
    dataset.set_epoch(0)
    assert stream(dataset, case) == epoch0
    for task in (t for item in fresh for t in episodes(item, case)):
        check_episode(task, case.rules(kind)[task.description.task_identifier])


def _at_epoch(case: Case, kind: str, epoch: int) -> Any:
    dataset = case.build(kind, 0)
    if case.epochs:
        dataset.set_epoch(epoch)
    return dataset


@pytest.mark.parametrize(("name", "kind"), PAIRS)
@pytest.mark.parametrize("k", [0, 3, LENGTH])
def test_resume_mid_stream_equals_the_uninterrupted_stream(name: str, kind: str, k: int) -> None:
    case = CASES[name]
    full = stream(_at_epoch(case, kind, 2), case)
    interrupted = _at_epoch(case, kind, 2)
    head = [signature(item, case) for item in itertools.islice(interrupted, k)]
    if case.state_dict:
        state = json.loads(json.dumps(interrupted.state_dict()))  # plain data: survives JSON, torch.save
        resumed = case.build(kind, 0)
        resumed.load_state_dict(state)
        resumed.set_epoch(2)  # a loop that sets the same epoch again keeps the position
        assert head + stream(resumed, case) == full
    elif case.map_style:  # the checkpoint is (epoch, next index): random access resumes there
        resumed = _at_epoch(case, kind, 2)
        assert head + [signature(resumed[i], case) for i in range(k, len(resumed))] == full
    else:  # no mid-epoch position: the epoch is the whole state
        assert stream(pickle.loads(pickle.dumps(interrupted)), case) == full


@pytest.mark.parametrize("name", _cases("sharded"))
def test_ranks_share_the_episodes_without_repeats(name: str) -> None:
    case = CASES[name]
    kind = case.kinds[0]
    everything = stream(case.build(kind, 0), case)
    shares = []
    with pytest.MonkeyPatch.context() as mp:
        for rank in range(3):
            fake_distributed(mp, rank, 3)
            shares.append(stream(case.build(kind, 0), case))
    assert sorted(x for share in shares for x in share) == sorted(everything)


def _same(got: list[tuple], expected: list[tuple], case: Case) -> None:
    if case.worker_order:
        assert got == expected
    else:  # sources that shard themselves: each worker interleaves its own share
        assert sorted(got) == sorted(expected)


@pytest.mark.parametrize("name", list(CASES))
def test_dataloader_with_two_workers_gives_the_same_episodes(name: str) -> None:
    case = CASES[name]
    kind = case.kinds[(list(CASES).index(name)) % len(case.kinds)]  # spread the kinds over the cases
    dataset = case.build(kind, 0)
    expected = stream(dataset, case)
    context = multiprocessing.get_context("fork")
    loader: Any
    if case.state_dict:  # resumable streams: persistent workers, sent the (epoch, index) of their items
        loader = StreamLoader(dataset, 2, persistent_workers=True, multiprocessing_context=context)
    else:  # others: workers started per epoch, with the epoch set here
        loader = DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context=context)
    got = stream(loader, case)
    _same(got, expected, case)
    assert len(got) == len(dataset)
    if case.epochs:  # the workers follow set_epoch calls made here
        dataset.set_epoch(1)
        expected = stream(dataset, case)
        _same(stream(loader, case), expected, case)
    if case.state_dict:  # a state saved while workers load resumes where the loop stopped
        dataset.set_epoch(0)
        head = [signature(item, case) for item in itertools.islice(loader, 3)]
        resumed = case.build(kind, 0)
        resumed.load_state_dict(dataset.state_dict())  # the loader counted the 3 items taken
        assert head + stream(resumed, case) == stream(case.build(kind, 0), case)


def test_the_contract_rejects_broken_episodes() -> None:
    task = few_shot("multiclass", 0)[0]
    check_episode(task, FEW_SHOT)
    (x, y), (qx, qy) = task.support, task.query
    leaked = Task((x, y), (torch.cat([qx[:-1], x[-1:]]), qy), task.description)  # same class
    with pytest.raises(AssertionError, match="support and query share examples"):
        check_episode(leaked, FEW_SHOT)
    swapped = Task((x, 3 - y), (qx, qy), task.description)  # labels that do not match the examples
    with pytest.raises(AssertionError, match="support labels do not match"):
        check_episode(swapped, FEW_SHOT)
    with pytest.raises(AssertionError, match="4 ways"):
        check_episode(task, Shots((2, 2), 2, (2, 3)))
