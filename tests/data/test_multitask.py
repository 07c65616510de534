"""Tests of the multi-task samplers: policies, epochs, sharding, resumption, errors."""

from __future__ import annotations

import json
import multiprocessing

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from torchcross.data import StreamLoader, TaskSource, TensorTaskSource
from torchcross.data.multitask import MultiTaskBatchSampler, MultiTaskEpisodeSampler
from torchcross.sampling.multitask_plan import StreamPlan, exhaustive_order, occurrences
from torchcross.sampling.weighting import TaskWeighting, resolve_weighting, sampling_probabilities
from torchcross.tasks.task import TaskDescription

SIZES = {"a": 13, "b": 7, "c": 20}
SQRT = np.sqrt([10, 40, 50])


def make_source(name: str, n: int, offset: int) -> TensorTaskSource:
    """Inputs are globally unique ids, so every example can be traced."""
    desc = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, name)
    return TensorTaskSource(torch.arange(offset, offset + n), torch.arange(n) % 2, desc)


def sources(sizes: dict[str, int] = SIZES) -> dict[str, TensorTaskSource]:
    out, offset = {}, 0
    for name, n in sizes.items():
        out[name] = make_source(name, n, offset)
        offset += 1000
    return out


class ListSource(TaskSource):
    """A source without get_batch, read item by item."""

    def __init__(self, name: str, n: int) -> None:
        self.task_description = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, name)
        self.labels = np.arange(n) % 2
        self.n = n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([float(i)]), int(self.labels[i])

    def __len__(self) -> int:
        return self.n


class Episodes:
    """A fake episode dataset: episode ``i`` of dataset ``name`` is the string ``name:i``."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return f"{self.name}:{i}"


def ids(stream) -> list[tuple[str, tuple[int, ...]]]:
    return [(d.task_identifier, tuple(x.tolist())) for (x, _), d in stream]


def flat_ids(stream) -> list[int]:
    return [i for _, batch in ids(stream) for i in batch]


def all_examples() -> list[int]:
    return sorted(o * 1000 + i for o, n in enumerate(SIZES.values()) for i in range(n))


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


# -- weighting policies -------------------------------------------------------------------


def test_probabilities_of_each_policy():
    sizes = [10, 40, 50]
    np.testing.assert_allclose(sampling_probabilities(sizes, "proportional"), [0.1, 0.4, 0.5])
    np.testing.assert_allclose(sampling_probabilities(sizes, "size"), [0.1, 0.4, 0.5])
    np.testing.assert_allclose(sampling_probabilities(sizes, "uniform"), [1 / 3] * 3)
    p = sampling_probabilities(sizes, "temperature", temperature=2.0)
    np.testing.assert_allclose(p, np.sqrt(sizes) / np.sqrt(sizes).sum())
    np.testing.assert_allclose(sampling_probabilities(sizes, "temperature", temperature=1.0), [0.1, 0.4, 0.5])
    np.testing.assert_allclose(sampling_probabilities(sizes, weights=[1, 1, 2]), [0.25, 0.25, 0.5])
    p = sampling_probabilities(sizes, weights={"x": 3, "y": 1, "z": 1}, names=["y", "x", "z"])
    np.testing.assert_allclose(p, [0.2, 0.6, 0.2])


def test_temperature_does_not_overflow():
    p = sampling_probabilities([10**9, 1], "temperature", temperature=0.01)
    np.testing.assert_allclose(p, [1.0, 0.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weighting": "softmax"}, "unknown weighting"),
        ({"weighting": "temperature"}, "needs temperature"),
        ({"weighting": "temperature", "temperature": 0}, "finite and > 0"),
        ({"weighting": "temperature", "temperature": -1.0}, "finite and > 0"),
        ({"weighting": "temperature", "temperature": float("inf")}, "finite and > 0"),
        ({"weighting": "uniform", "temperature": 2.0}, "only applies to weighting='temperature'"),
        ({"weighting": "uniform", "weights": [1, 2, 3]}, "only apply to weighting='explicit'"),
        ({"weighting": "explicit"}, "needs weights"),
        ({"weights": [1, 2]}, "got 2 weights for 3 tasks"),
        ({"weights": [1, 0, 2]}, "weight of task 'b' must be finite and > 0, got 0"),
        ({"weights": [1, -2, 2]}, "weight of task 'b' must be finite and > 0"),
        ({"weights": [1, float("nan"), 2]}, "finite and > 0"),
        ({"weights": {"a": 1, "b": 1, "c": 1, "zz": 2}}, r"unknown tasks \['zz'\]"),
        ({"weights": {"a": 1, "b": 1}}, r"missing tasks \['c'\]"),
    ],
)
def test_bad_weighting_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve_weighting(3, names=["a", "b", "c"], **kwargs)
    with pytest.raises(ValueError, match=message):
        MultiTaskBatchSampler(sources(), 4, **kwargs)


def test_bad_weight_types():
    with pytest.raises(TypeError, match="weighting must be a str"):
        resolve_weighting(2, 3)
    with pytest.raises(TypeError, match="temperature must be a number"):
        resolve_weighting(2, "temperature", temperature="hot")
    with pytest.raises(TypeError, match="weight of task '1' must be a number"):
        resolve_weighting(2, weights=[1, "x"])
    with pytest.raises(TypeError, match="must be a sequence or a mapping"):
        resolve_weighting(2, weights=5)
    with pytest.raises(ValueError, match="not unique"):
        resolve_weighting(2, weights={"a": 1}, names=["a", "a"])
    with pytest.raises(ValueError, match="size >= 1"):
        sampling_probabilities([3, 0])
    with pytest.raises(ValueError, match="non-empty"):
        sampling_probabilities([])


@given(
    counts=st.lists(st.integers(0, 30), min_size=1, max_size=5).filter(lambda c: sum(c) > 0),
    kind=st.sampled_from(["proportional", "uniform", "temperature", "explicit"]),
    seed=st.integers(0, 2**32),
)
def test_exhaustive_order_takes_each_task_exactly_its_count(counts, kind, seed):
    policy = TaskWeighting(
        kind,
        temperature=0.5 if kind == "temperature" else None,
        explicit=tuple(float(i + 1) for i in range(len(counts))) if kind == "explicit" else None,
    )
    order = exhaustive_order(np.array(counts), policy, np.random.default_rng(seed))
    assert np.bincount(order, minlength=len(counts)).tolist() == counts
    occ = occurrences(order, len(counts))
    for t in range(len(counts)):
        assert occ[order == t].tolist() == list(range(counts[t]))


def test_epoch_temperature_policy_draws_by_remaining_to_the_power_one_over_t():
    # first draw of [1, 9] with T = 2: p(task 0) = 1 / (1 + 3)
    policy = TaskWeighting("temperature", temperature=2.0)
    first = [exhaustive_order(np.array([1, 9]), policy, np.random.default_rng(s))[0] for s in range(4000)]
    counts = np.bincount(first, minlength=2).astype(np.float64)
    assert chi_square(counts, np.array([0.25, 0.75])) < 25.0


def test_epoch_temperature_policy_extreme_temperatures():
    cold = exhaustive_order(
        np.array([100_000, 5]), TaskWeighting("temperature", temperature=0.001), np.random.default_rng(0)
    )
    assert np.where(cold == 1)[0].min() > 99_000  # T -> 0: always the largest remaining
    hot = exhaustive_order(
        np.array([100_000, 5]), TaskWeighting("temperature", temperature=1e6), np.random.default_rng(0)
    )
    assert np.where(hot == 1)[0].max() < 100  # T -> inf: uniform while both last


def test_stream_plan_is_the_same_however_it_is_read():
    probs = np.array([0.2, 0.3, 0.5])
    whole = StreamPlan(probs, (7, 0), block=16).draws(0, 100)
    plan = StreamPlan(probs, (7, 0), block=16)
    parts = [plan.draws(a, a + 9) for a in range(0, 100, 9)]
    tasks = np.concatenate([p[0] for p in parts])[:100]
    occ = np.concatenate([p[1] for p in parts])[:100]
    np.testing.assert_array_equal(tasks, whole[0])
    np.testing.assert_array_equal(occ, whole[1])
    np.testing.assert_array_equal(whole[1], occurrences(whole[0], 3))
    late = StreamPlan(probs, (7, 0), block=16).draws(90, 100)  # jumping ahead gives the same
    np.testing.assert_array_equal(late[1], whole[1][90:])


# -- proportions (statistical, deterministic because seeded) ------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"weighting": "proportional"}, [0.1, 0.4, 0.5]),
        ({"weighting": "uniform"}, [1 / 3, 1 / 3, 1 / 3]),
        (
            {"weighting": "temperature", "temperature": 2.0},
            np.sqrt([10, 40, 50]) / np.sqrt([10, 40, 50]).sum(),
        ),
        ({"weights": {"x": 1.0, "y": 1.0, "z": 6.0}}, [0.125, 0.125, 0.75]),
    ],
)
def test_infinite_proportions_match_the_policy(kwargs, expected):
    datasets = {"x": Episodes("x", 10), "y": Episodes("y", 40), "z": Episodes("z", 50)}
    sampler = MultiTaskEpisodeSampler(datasets, 50, mode="infinite", length=200, seed=3, **kwargs)
    names = [e.split(":")[0] for mb in sampler for e in mb]
    counts = np.array([names.count(n) for n in "xyz"], dtype=np.float64)
    assert counts.sum() == 10_000
    # chi-square with 2 degrees of freedom: P(X > 25) is about 4e-6
    assert chi_square(counts, np.asarray(expected)) < 25.0


def test_batch_sampler_infinite_proportions_and_cycles():
    srcs = sources({"a": 8, "b": 32})
    sampler = MultiTaskBatchSampler(srcs, 4, weighting="uniform", mode="infinite", length=2000, seed=5)
    stream = ids(sampler)
    counts = np.array([sum(t == n for t, _ in stream) for n in "ab"], dtype=np.float64)
    assert chi_square(counts, np.array([0.5, 0.5])) < 25.0
    # within a task, items are taken in cycles: each cycle covers every example once
    b_examples = [i for t, batch in stream if t == "b" for i in batch]
    for c in range(3):
        assert sorted(b_examples[c * 32 : (c + 1) * 32]) == list(range(1000, 1032))


def test_epoch_mode_uniform_policy_draws_evenly_while_all_tasks_last():
    datasets = {"x": Episodes("x", 300), "y": Episodes("y", 600), "z": Episodes("z", 1200)}
    sampler = MultiTaskEpisodeSampler(datasets, 1, weighting="uniform", seed=11)
    first = [mb[0].split(":")[0] for mb, _ in zip(sampler, range(600))]
    counts = np.array([first.count(n) for n in "xyz"], dtype=np.float64)
    assert chi_square(counts, np.full(3, 1 / 3)) < 25.0
    everything = [e for mb in sampler for e in mb]
    assert len(everything) == len(set(everything)) == 2100


# -- epochs and determinism ---------------------------------------------------------------


def test_epoch_mode_yields_every_example_once_in_batches_of_one_task():
    sampler = MultiTaskBatchSampler(sources(), 4, seed=0)
    stream = ids(sampler)
    assert len(stream) == len(sampler) == 4 + 2 + 5
    assert sorted(i for _, b in stream for i in b) == all_examples()
    offsets = {"a": 0, "b": 1000, "c": 2000}
    for task, batch in stream:
        assert all(offsets[task] <= i < offsets[task] + 1000 for i in batch)
        assert 1 <= len(batch) <= 4


def test_draws_expose_the_plan():
    sampler = MultiTaskBatchSampler(sources(), 4, seed=0)
    tasks, occ = sampler.draws(0, len(sampler))
    assert np.bincount(tasks).tolist() == sampler.sizes == [4, 2, 5]
    np.testing.assert_array_equal(occ, occurrences(tasks, 3))
    first = [(sampler.names[t], tuple(sampler.batch_indices(t, k).tolist())) for t, k in zip(tasks, occ)]
    offsets = {"a": 0, "b": 1000, "c": 2000}
    assert [(n, tuple(i + offsets[n] for i in b)) for n, b in first] == ids(sampler)


def test_drop_last_and_shuffle_false():
    sampler = MultiTaskBatchSampler(sources(), 4, drop_last=True, shuffle=False, seed=0)
    stream = ids(sampler)
    assert len(stream) == len(sampler) == 3 + 1 + 5
    assert all(len(b) == 4 for _, b in stream)
    a_batches = [b for t, b in stream if t == "a"]
    assert a_batches == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11)]


def test_same_seed_same_stream_other_seed_or_epoch_differs():
    first = ids(MultiTaskBatchSampler(sources(), 4, seed=1))
    assert ids(MultiTaskBatchSampler(sources(), 4, seed=1)) == first
    assert ids(MultiTaskBatchSampler(sources(), 4, seed=2)) != first
    sampler = MultiTaskBatchSampler(sources(), 4, seed=1)
    sampler.set_epoch(1)
    second = ids(sampler)
    assert second != first
    assert sorted(i for _, b in second for i in b) == all_examples()
    sampler.set_epoch(0)
    assert ids(sampler) == first


def test_sources_as_list_are_named_by_identifier_and_custom_collate():
    srcs = [ListSource("p", 5), ListSource("q", 3)]
    sampler = MultiTaskBatchSampler(srcs, 2, collate_fn=lambda items: [x for x, _ in items], seed=0)
    assert sampler.names == ["p", "q"]
    out = list(sampler)
    assert sum(len(b) for b, _ in out) == 8
    assert {d.task_identifier for _, d in out} == {"p", "q"}
    stacked = next(iter(MultiTaskBatchSampler(srcs, 2, with_task_description=False, seed=0)))
    assert isinstance(stacked, tuple)
    assert stacked[0].shape == (2, 1)


def test_infinite_without_length_is_endless():
    sampler = MultiTaskBatchSampler(sources(), 4, mode="infinite", seed=0)
    it = iter(sampler)
    assert len([next(it) for _ in range(100)]) == 100
    with pytest.raises(TypeError, match="no len"):
        len(sampler)


def test_infinite_with_length_epochs_differ():
    sampler = MultiTaskBatchSampler(sources(), 4, mode="infinite", length=6, seed=0)
    e0 = ids(sampler)
    sampler.set_epoch(1)
    e1 = ids(sampler)
    assert len(e0) == len(e1) == len(sampler) == 6
    assert e0 != e1


# -- sharding across ranks and workers ----------------------------------------------------


def _loader_items(sampler, workers: int) -> list:
    kwargs = {"multiprocessing_context": multiprocessing.get_context("fork")} if workers else {}
    return list(DataLoader(sampler, batch_size=None, num_workers=workers, **kwargs))


@pytest.mark.parametrize("world_size", [1, 3])
def test_exactly_once_across_ranks_and_workers(world_size):
    single = ids(MultiTaskBatchSampler(sources(), 3, seed=4))
    per_rank = []
    for rank in range(world_size):
        sampler = MultiTaskBatchSampler(sources(), 3, seed=4, rank=rank, world_size=world_size)
        with_workers = ids(_loader_items(sampler, 2))
        assert with_workers == ids(sampler)  # the DataLoader hands a rank its items in stream order
        assert len(with_workers) == len(sampler)
        per_rank.append(with_workers)
    merged = [per_rank[p % world_size][p // world_size] for p in range(len(single))]
    assert merged == single  # global item p went to rank p % world_size
    assert sorted(i for r in per_rank for _, b in r for i in b) == all_examples()


def test_episode_meta_batches_exactly_once_across_ranks_and_workers():
    datasets = {"x": Episodes("x", 7), "y": Episodes("y", 11)}
    seen = []
    for rank in range(2):
        sampler = MultiTaskEpisodeSampler(datasets, 3, seed=2, rank=rank, world_size=2)
        meta_batches = _loader_items(sampler, 2)
        assert meta_batches == list(sampler)
        seen += [e for mb in meta_batches for e in mb]
    assert sorted(seen) == sorted([f"x:{i}" for i in range(7)] + [f"y:{i}" for i in range(11)])


def test_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        MultiTaskBatchSampler(sources(), 4, rank=2, world_size=2)


# -- resumption ---------------------------------------------------------------------------


def _take(sampler, k: int) -> list:
    out = []
    it = iter(sampler)
    for _ in range(k):
        out.append(next(it))
    return out


@pytest.mark.parametrize("mode", ["epoch", "infinite"])
@pytest.mark.parametrize("k", [0, 1, 5, 11])
def test_resume_after_k_steps_equals_the_uninterrupted_stream(mode, k):
    kwargs = {"mode": mode, "length": 11 if mode == "infinite" else None, "weighting": "uniform", "seed": 9}
    full = ids(MultiTaskBatchSampler(sources(), 3, **kwargs))
    first = MultiTaskBatchSampler(sources(), 3, **kwargs)
    head = ids(_take(first, k))
    state = json.loads(json.dumps(first.state_dict()))  # plain data: survives JSON and torch.save
    resumed = MultiTaskBatchSampler(sources(), 3, **kwargs)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)  # a training loop calling set_epoch on the same epoch keeps the position
    assert head + ids(resumed) == full


def test_state_with_explicit_weights_survives_json():
    kwargs = {"weights": {"a": 1.0, "b": 2.0, "c": 3.0}, "mode": "infinite", "length": 9, "seed": 2}
    first = MultiTaskBatchSampler(sources(), 3, **kwargs)
    head = ids(_take(first, 4))
    resumed = MultiTaskBatchSampler(sources(), 3, **kwargs)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + ids(resumed) == ids(MultiTaskBatchSampler(sources(), 3, **kwargs))
    other = MultiTaskBatchSampler(sources(), 3, **{**kwargs, "weights": {"a": 1.0, "b": 2.0, "c": 4.0}})
    with pytest.raises(ValueError, match="weighting: saved"):
        other.load_state_dict(first.state_dict())


def test_resume_endless_stream_far_ahead():
    kwargs = {"mode": "infinite", "weighting": "temperature", "temperature": 3.0, "seed": 1}
    sampler = MultiTaskBatchSampler(sources(), 2, **kwargs)
    full = ids(_take(sampler, 60))
    first = MultiTaskBatchSampler(sources(), 2, **kwargs)
    _take(first, 45)
    other = MultiTaskBatchSampler(sources(), 2, **kwargs)
    other.load_state_dict({**first.state_dict()})
    assert ids(_take(other, 15)) == full[45:]


def test_resume_episodes_and_next_epoch_starts_fresh():
    datasets = {"x": Episodes("x", 5), "y": Episodes("y", 9)}
    full = list(MultiTaskEpisodeSampler(datasets, 2, seed=3))
    first = MultiTaskEpisodeSampler(datasets, 2, seed=3)
    head = _take(first, 3)
    resumed = MultiTaskEpisodeSampler(datasets, 2, seed=3)
    resumed.load_state_dict(first.state_dict())
    assert head + list(resumed) == full
    resumed.set_epoch(1)
    assert sorted(e for mb in resumed for e in mb) == sorted(e for mb in full for e in mb)


def test_resume_with_workers_and_another_world_size():
    # two ranks with two workers each consume 2 items each, then training resumes on one rank
    kwargs = {"seed": 6}
    consumed = []
    states = []
    for rank in range(2):
        sampler = MultiTaskBatchSampler(sources(), 3, rank=rank, world_size=2, **kwargs)
        loader = iter(StreamLoader(sampler, num_workers=2, multiprocessing_context="fork"))
        consumed += ids([next(loader) for _ in range(2)])
        states.append(sampler.state_dict())  # the loader counted the 2 items taken
    assert states[0] == states[1]
    resumed = MultiTaskBatchSampler(sources(), 3, rank=0, world_size=1, **kwargs)
    resumed.load_state_dict(states[0])
    rest = ids(resumed)
    full = ids(MultiTaskBatchSampler(sources(), 3, **kwargs))
    assert sorted(consumed + rest) == sorted(full)
    assert rest == full[4:]


def test_state_at_epoch_end_and_position_clamped():
    sampler = MultiTaskBatchSampler(sources(), 4, seed=0)
    list(sampler)
    state = sampler.state_dict()
    assert state["position"] == len(sampler)
    sampler.position.consumed = 100  # more than the epoch holds
    assert sampler.state_dict()["position"] == len(sampler)
    other = MultiTaskBatchSampler(sources(), 4, seed=0)
    other.load_state_dict(state)
    assert list(other) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seed": 1}, "seed"),
        ({"batch_size": 5}, "batch_size"),
        ({"weighting": "uniform"}, "weighting"),
        ({"drop_last": True}, "drop_last"),
        ({"mode": "infinite", "length": 3}, "mode"),
    ],
)
def test_state_from_another_configuration_is_refused_by_name(change, field):
    base = {"batch_size": 4, "seed": 0}
    state = MultiTaskBatchSampler(sources(), **base).state_dict()
    other = MultiTaskBatchSampler(sources(), **{**base, **change})
    with pytest.raises(ValueError, match=f"different configuration.*{field}: saved"):
        other.load_state_dict(state)
    bigger = MultiTaskBatchSampler(sources({**SIZES, "a": 14}), **base)
    with pytest.raises(ValueError, match="num_examples"):
        bigger.load_state_dict(state)
    episodes = MultiTaskEpisodeSampler({"x": Episodes("x", 3)}, 2)
    with pytest.raises(ValueError, match="type: saved 'MultiTaskBatchSampler'"):
        episodes.load_state_dict(state)


def test_malformed_state_dicts():
    sampler = MultiTaskBatchSampler(sources(), 4, seed=0)
    with pytest.raises(ValueError, match="need epoch, position, config"):
        sampler.load_state_dict({"epoch": 0})
    state = sampler.state_dict()
    with pytest.raises(ValueError, match="beyond the epoch"):
        sampler.load_state_dict({**state, "position": 999})
    with pytest.raises(ValueError, match="position"):
        sampler.load_state_dict({**state, "position": -1})


# -- bad input ----------------------------------------------------------------------------


def test_bad_sources_and_settings():
    with pytest.raises(ValueError, match="sources is empty"):
        MultiTaskBatchSampler([], 4)
    with pytest.raises(ValueError, match="sources is empty"):
        MultiTaskBatchSampler({}, 4)
    with pytest.raises(TypeError, match="list or a"):
        MultiTaskBatchSampler("abc", 4)
    with pytest.raises(TypeError, match="no task_description"):
        MultiTaskBatchSampler([[1, 2, 3]], 4)
    with pytest.raises(ValueError, match=r"without a single batch.*\('b', 7\)"):
        MultiTaskBatchSampler(sources(), 8, drop_last=True)
    with pytest.raises(ValueError, match="batch_size"):
        MultiTaskBatchSampler(sources(), 0)
    with pytest.raises(ValueError, match="mode must be one of"):
        MultiTaskBatchSampler(sources(), 4, mode="forever")
    with pytest.raises(ValueError, match="length only applies"):
        MultiTaskBatchSampler(sources(), 4, length=10)
    with pytest.raises(ValueError, match="length"):
        MultiTaskBatchSampler(sources(), 4, mode="infinite", length=0)
    with pytest.raises(ValueError, match="seed"):
        MultiTaskBatchSampler(sources(), 4, seed=-1)
    with pytest.raises(TypeError, match="collate_fn"):
        MultiTaskBatchSampler(sources(), 4, collate_fn=3)
    with pytest.raises(ValueError, match="epoch"):
        MultiTaskBatchSampler(sources(), 4).set_epoch(-1)


def test_bad_episode_datasets():
    with pytest.raises(ValueError, match="datasets is empty"):
        MultiTaskEpisodeSampler([], 2)
    with pytest.raises(TypeError, match="map-style"):
        MultiTaskEpisodeSampler([iter([1, 2])], 2)
    with pytest.raises(ValueError, match="'e' is empty"):
        MultiTaskEpisodeSampler({"e": Episodes("e", 0)}, 2)
    with pytest.raises(ValueError, match="meta_batch_size"):
        MultiTaskEpisodeSampler({"e": Episodes("e", 3)}, 0)
    with pytest.raises(ValueError, match="shuffle=False"):
        MultiTaskEpisodeSampler({"e": Episodes("e", 10**9)}, 2, mode="infinite")


def test_huge_unshuffled_episode_dataset_in_infinite_mode():
    sampler = MultiTaskEpisodeSampler(
        {"e": Episodes("e", 10**9), "f": Episodes("f", 4)}, 4, mode="infinite", length=3, shuffle=False
    )
    meta_batches = list(sampler)
    assert len(meta_batches) == 3
    assert all(len(mb) == 4 for mb in meta_batches)


class EpochEpisodes(Episodes):
    """Episodes that depend on the epoch, like torchcross's seeded episode datasets."""

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> str:
        return f"{super().__getitem__(i)}@{self.epoch}"


def test_set_epoch_reaches_episode_datasets_and_resume_keeps_it():
    def make():
        return MultiTaskEpisodeSampler({"x": EpochEpisodes("x", 4), "y": EpochEpisodes("y", 6)}, 2, seed=0)

    sampler = make()
    sampler.set_epoch(3)
    full = list(sampler)
    assert all(e.endswith("@3") for mb in full for e in mb)
    first = make()
    first.set_epoch(3)
    head = _take(first, 2)
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    assert head + list(resumed) == full


def test_episode_drop_last_and_collate():
    datasets = [Episodes("x", 5), Episodes("y", 2)]
    assert [len(mb) for mb in MultiTaskEpisodeSampler(datasets, 3, seed=0)] == [3, 3, 1]
    assert [len(mb) for mb in MultiTaskEpisodeSampler(datasets, 3, seed=0, drop_last=True)] == [3, 3]
    joined = list(MultiTaskEpisodeSampler(datasets, 3, seed=0, collate_fn="|".join))
    assert all(isinstance(s, str) for s in joined)
