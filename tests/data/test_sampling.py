"""Property-based tests of the pure episode sampling rules (torchcross.sampling.episodes)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from torchcross.sampling.episodes import (
    EpisodeIndices,
    LabelIndex,
    episode_labels,
    index_labels,
    relabel_description,
    sample_binary_episode,
    sample_episode,
    sample_multiclass_episode,
    sample_multilabel_episode,
    sample_ordinal_episode,
    sample_per_class,
)
from torchcross.sampling.multilabel import cover_quotas
from torchcross.sampling.variable import sample_variable_episode
from torchcross.tasks.task import TaskDescription, TaskTarget

MC, BIN, ML, ORD = (
    TaskTarget.MULTICLASS_CLASSIFICATION,
    TaskTarget.BINARY_CLASSIFICATION,
    TaskTarget.MULTILABEL_CLASSIFICATION,
    TaskTarget.ORDINAL_REGRESSION,
)
ORDINAL_KEYS = (1, 4, 6, 8, 10)


@st.composite
def single_label_case(draw, target: TaskTarget):
    """Labels with every class large enough for ``k`` support + ``q`` query, in random file order."""
    k = draw(st.integers(1, 4))
    q = draw(st.integers(0, 4))
    if target is BIN:
        keys = (0, 1)
    elif target is ORD:
        keys = tuple(sorted(draw(st.sets(st.sampled_from(ORDINAL_KEYS), min_size=2))))
    else:
        keys = tuple(range(draw(st.integers(2, 6))))
    extra = draw(st.lists(st.integers(0, 12), min_size=len(keys), max_size=len(keys)))
    labels = np.concatenate([np.full(k + q + e, key) for key, e in zip(keys, extra)])
    seed = draw(st.integers(0, 2**32 - 1))
    labels = np.random.default_rng(seed).permutation(labels)
    return labels, keys, k, q, seed


def _rule(target: TaskTarget):
    return {
        MC: sample_multiclass_episode,
        ORD: sample_ordinal_episode,
        BIN: lambda labels, k, q, rng, classes=None: sample_binary_episode(labels, k, q, rng),
    }[target]


def _check_single_label_episode(labels, ep: EpisodeIndices, classes, k, q) -> None:
    assert ep.support.dtype == np.int64
    assert ep.query.dtype == np.int64
    assert not set(ep.support.tolist()) & set(ep.query.tolist())
    assert len(set(ep.support.tolist())) == len(ep.support)
    assert len(set(ep.query.tolist())) == len(ep.query)
    # exact counts per class, class-major in episode order
    assert labels[ep.support].tolist() == np.repeat(classes, k).tolist()
    assert labels[ep.query].tolist() == np.repeat(classes, q).tolist()


@pytest.mark.parametrize("target", [MC, ORD, BIN])
@given(data=st.data())
def test_single_label_rules_exact_disjoint_deterministic(target, data) -> None:
    labels, keys, k, q, seed = data.draw(single_label_case(target))
    if target is BIN:
        classes = (0, 1)
        chosen = None
    else:
        chosen = data.draw(
            st.permutations(keys).flatmap(lambda p: st.integers(2, len(p)).map(lambda n: p[:n]))
        )
        classes = tuple(sorted(chosen)) if target is ORD else tuple(chosen)
    rule = _rule(target)
    ep = rule(labels, k, q, np.random.default_rng(seed), classes=chosen)
    assert ep.classes == classes
    _check_single_label_episode(labels, ep, classes, k, q)
    again = rule(labels, k, q, np.random.default_rng(seed), classes=chosen)
    assert again.support.tolist() == ep.support.tolist()
    assert again.query.tolist() == ep.query.tolist()
    # relabelled labels agree with the original keys
    index = index_labels(labels, target)
    sup_y, qry_y = episode_labels(index, ep)
    flat_sup = sup_y.reshape(len(sup_y))
    assert [classes[i] for i in flat_sup] == labels[ep.support].tolist()
    assert [classes[i] for i in qry_y.reshape(len(qry_y))] == labels[ep.query].tolist()
    assert sup_y.shape == ((len(ep.support), 1) if target is BIN else (len(ep.support),))


@pytest.mark.parametrize("target", [MC, ORD, BIN])
@given(data=st.data())
def test_single_label_rules_differ_between_seeds(target, data) -> None:
    labels, _keys, k, q, seed = data.draw(single_label_case(target))
    assume(np.bincount(labels).max() >= 2)  # else there is only one possible episode
    rule = _rule(target)
    episodes = set()
    for i in range(12):
        ep = rule(labels, k, q, np.random.default_rng([seed, i]))
        episodes.add((tuple(ep.support.tolist()), tuple(ep.query.tolist())))
    assert len(episodes) > 1


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("size", [3, 5, 40, 20_000])
def test_draws_are_uniform_within_a_class(size, ragged) -> None:
    """Every example of a class is equally likely, whatever the file order and pool size."""
    labels = np.zeros(size + 3, dtype=np.int64)
    labels[-3:] = 1  # a second class, last in the file
    n_draws, k, q = 1000, 2, 1
    rng = np.random.default_rng(0)
    index = index_labels(labels, MC)
    counts = np.zeros(size)
    first = np.zeros(size)
    for _ in range(n_draws):
        if ragged:  # per-class counts as a list: the path of imbalanced (variable-shot) episodes
            ep = sample_per_class(index, [k], [q], rng, classes=[0])
        else:
            ep = sample_multiclass_episode(index, k, q, rng, classes=[0])
        np.add.at(counts, np.concatenate([ep.support, ep.query]), 1)
        first[ep.support[0]] += 1
    if size <= 40:
        expected = n_draws * (k + q) / size
        assert np.abs(counts - expected).max() < 6 * np.sqrt(expected)
        assert np.abs(first - n_draws / size).max() < 6 * np.sqrt(n_draws / size)
    else:  # a large pool: picks spread over the whole file, not its start
        assert (counts[: size // 2].sum() / counts.sum()) == pytest.approx(0.5, abs=0.05)


def test_support_is_shuffled_within_class() -> None:
    labels = np.repeat([0, 1], 50)
    supports = [sample_multiclass_episode(labels, 5, 0, np.random.default_rng(s)).support for s in range(20)]
    assert any((np.diff(s[:5]) < 0).any() for s in supports)


@st.composite
def multilabel_case(draw):
    n_labels = draw(st.integers(2, 5))
    n = draw(st.integers(30, 120))
    seed = draw(st.integers(0, 2**32 - 1))
    prevalence = draw(st.lists(st.floats(0.2, 0.8), min_size=n_labels, max_size=n_labels))
    labels = (np.random.default_rng(seed).random((n, n_labels)) < np.array(prevalence)).astype(np.int64)
    k = draw(st.integers(1, 3))
    q = draw(st.integers(0, 3))
    need = k + q
    pos = labels.sum(0)
    usable = [j for j in range(n_labels) if min(pos[j], n - pos[j]) >= 3 * need]
    return labels, usable, k, q, seed


def _quota_met(rows: np.ndarray, quota: int) -> bool:
    return bool((rows.sum(0) >= quota).all() and ((1 - rows).sum(0) >= quota).all())


@given(case=multilabel_case())
def test_multilabel_rule_quotas_disjoint_irredundant_deterministic(case) -> None:
    labels, usable, k, q, seed = case
    assume(len(usable) >= 2)
    ep = sample_multilabel_episode(labels, k, q, np.random.default_rng(seed), classes=usable, max_attempts=50)
    cols = labels[:, usable]
    assert ep.classes == tuple(usable)
    assert not set(ep.support.tolist()) & set(ep.query.tolist())
    assert len(set(ep.support.tolist())) == len(ep.support)
    assert _quota_met(cols[ep.support], k)
    assert _quota_met(cols[ep.query], q)
    # near-minimal: no single support (or query) example can be dropped
    for part, quota in ((ep.support, k), (ep.query, q)):
        for j in range(len(part)):
            assert not _quota_met(cols[np.delete(part, j)], quota)
    again = sample_multilabel_episode(
        labels, k, q, np.random.default_rng(seed), classes=usable, max_attempts=50
    )
    assert again.support.tolist() == ep.support.tolist()
    assert again.query.tolist() == ep.query.tolist()
    sup_y, qry_y = episode_labels(index_labels(labels, ML), ep)
    assert np.array_equal(sup_y, cols[ep.support])
    assert np.array_equal(qry_y, cols[ep.query])


@given(case=multilabel_case())
def test_multilabel_rule_differs_between_seeds(case) -> None:
    labels, usable, k, q, seed = case
    assume(len(usable) >= 2)
    index = index_labels(labels, ML)
    supports = {
        tuple(
            sample_multilabel_episode(
                index, k, q, np.random.default_rng([seed, i]), usable, 50
            ).support.tolist()
        )
        for i in range(10)
    }
    assert len(supports) > 1


# a matrix where the greedy cover fails about a third of the time on the first attempt
OVERLAPPING = np.array(
    [[1, 0, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]]
)
# every support set meeting the quotas uses up some label's positives: never possible
IMPOSSIBLE = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0]])


def test_multilabel_retries_a_bounded_number_of_times() -> None:
    failures = []
    for seed in range(60):
        try:
            sample_multilabel_episode(OVERLAPPING, 1, 1, np.random.default_rng(seed), max_attempts=1)
        except ValueError as exc:
            failures.append(str(exc))
    assert 0 < len(failures) < 60
    assert all("could not meet the multi-label quotas" in message for message in failures)
    for seed in range(60):
        sample_multilabel_episode(OVERLAPPING, 1, 1, np.random.default_rng(seed), max_attempts=60)


def test_multilabel_impossible_quotas_raise_clear_error() -> None:
    with pytest.raises(ValueError, match=r"in 7 attempts: the 2 positives of label \d ran out"):
        sample_multilabel_episode(IMPOSSIBLE, 1, 1, np.random.default_rng(0), max_attempts=7)


def test_multilabel_too_few_examples_named() -> None:
    labels = np.array([[1, 0]] * 3 + [[0, 1]] * 30)
    with pytest.raises(ValueError, match=r"label 0 \(3 positives, 30 negatives\)"):
        sample_multilabel_episode(labels, 2, 2, np.random.default_rng(0))


def test_multilabel_100k_by_14_is_fast() -> None:
    rng = np.random.default_rng(0)
    prevalence = np.linspace(0.01, 0.4, 14)
    labels = (rng.random((100_000, 14)) < prevalence).astype(np.int64)
    index = index_labels(labels, ML)
    times = []
    for i in range(20):
        t0 = time.perf_counter()
        ep = sample_multilabel_episode(index, 5, 10, np.random.default_rng([0, i]))
        times.append(time.perf_counter() - t0)
        assert _quota_met(labels[ep.support], 5)
        assert _quota_met(labels[ep.query], 10)
    assert np.median(times) < 0.05, f"median {np.median(times) * 1e3:.1f} ms per 5-shot episode"
    # a near-minimal support set: far below 2 * 14 * 5 examples
    assert len(ep.support) < 60


def test_cover_quotas_marks_taken_and_returns_empty_for_zero_quota() -> None:
    index = index_labels(OVERLAPPING, ML)
    taken: set[int] = set()
    assert cover_quotas(index, [0, 1, 2], 0, taken, np.random.default_rng(0)).size == 0
    chosen = cover_quotas(index, [0, 1, 2], 1, taken, np.random.default_rng(0))
    assert taken == set(chosen.tolist())
    assert chosen.dtype == np.int64
    # when random candidates keep hitting taken examples, the untaken rest is searched
    taken = set(range(len(OVERLAPPING))) - {1, 4}
    chosen = cover_quotas(index, [2], 1, taken, np.random.default_rng(0), n_candidates=1)
    assert sorted(chosen.tolist()) == [1, 4]


@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(2, 12), target=st.sampled_from([MC, ORD, BIN]))
def test_variable_rule_follows_meta_dataset(seed, n_classes, target) -> None:
    rng = np.random.default_rng(seed)
    keys = (0, 1) if target is BIN else tuple(range(n_classes))
    sizes = rng.integers(2, 60, len(keys))
    labels = rng.permutation(np.repeat(keys, sizes))
    index = index_labels(labels, target)
    ep = sample_variable_episode(
        index, np.random.default_rng(seed), min_ways=3, max_ways=8, max_support_size=40
    )
    n_way = len(ep.classes)
    assert n_way == 2 if target is BIN else min(3, len(keys)) <= n_way <= min(8, len(keys))
    if target is ORD:
        assert list(ep.classes) == sorted(ep.classes)
    counts = {c: int(s) for c, s in zip(keys, sizes)}
    q = min(10, min(counts[c] for c in ep.classes) // 2)
    assert labels[ep.query].tolist() == np.repeat(ep.classes, q).tolist()  # balanced query
    shots = [int((labels[ep.support] == c).sum()) for c in ep.classes]
    assert all(1 <= s <= counts[c] - q for s, c in zip(shots, ep.classes))
    assert len(ep.support) <= 40  # the support size cap
    assert not set(ep.support.tolist()) & set(ep.query.tolist())


def test_variable_rule_refuses_multilabel_and_tiny_classes() -> None:
    with pytest.raises(ValueError, match="single-label"):
        sample_variable_episode(index_labels(OVERLAPPING, ML), np.random.default_rng(0))
    with pytest.raises(ValueError, match=">= 2 examples"):
        sample_variable_episode(index_labels([0, 0, 1], MC), np.random.default_rng(0))


def test_sample_per_class_imbalanced_and_errors() -> None:
    labels = np.repeat([0, 1, 2], [5, 6, 7])
    ep = sample_per_class(labels, [1, 2, 3], [1, 1, 1], np.random.default_rng(0))
    assert labels[ep.support].tolist() == [0, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match=r"class 0: 5 < 6"):
        sample_per_class(labels, 3, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="one shot and one query count per class"):
        sample_per_class(labels, [1, 2], 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match=">= 0"):
        sample_per_class(labels, -1, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="got a MULTILABEL_CLASSIFICATION index"):
        sample_per_class(index_labels(OVERLAPPING, ML), 1, 1, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: sample_multiclass_episode([0, 1] * 5, 1, 1, 0), TypeError, "numpy.random.Generator"),
        (
            lambda: sample_multiclass_episode([0, 1] * 5, 0, 1, np.random.default_rng()),
            ValueError,
            "n_shot",
        ),
        (
            lambda: sample_multiclass_episode([0, 1] * 5, 1.5, 1, np.random.default_rng()),
            TypeError,
            "n_shot",
        ),
        (
            lambda: sample_multiclass_episode([0, 1] * 5, 1, -1, np.random.default_rng()),
            ValueError,
            "n_query",
        ),
        (
            lambda: sample_multiclass_episode([0, 1] * 5, 1, 1, np.random.default_rng(), [0, 0]),
            ValueError,
            "repeat",
        ),
        (
            lambda: sample_multiclass_episode([0, 1] * 5, 1, 1, np.random.default_rng(), [0, 7]),
            ValueError,
            "7",
        ),
        (
            lambda: sample_multiclass_episode([0, 0, 0], 1, 1, np.random.default_rng()),
            ValueError,
            "two classes",
        ),
        (
            lambda: sample_multilabel_episode(OVERLAPPING, 1, 1, np.random.default_rng(), max_attempts=0),
            ValueError,
            "max_attempts",
        ),
        (lambda: sample_episode([0, 1], 1, 1, np.random.default_rng()), TypeError, "LabelIndex"),
        (lambda: sample_variable_episode([0, 1], np.random.default_rng()), TypeError, "LabelIndex"),
        (
            lambda: sample_binary_episode(index_labels([0, 1], MC), 1, 0, np.random.default_rng()),
            ValueError,
            "BINARY",
        ),
        (lambda: index_labels([0.5, 1.0], TaskTarget.REGRESSION), ValueError, "REGRESSION"),
    ],
)
def test_rule_errors(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


def test_index_labels_uses_the_description_keys() -> None:
    d = TaskDescription(ORD, {1: "a", 4: "b", 6: "c"}, "grades")
    index = index_labels([6, 1, 6, 4], d)
    assert isinstance(index, LabelIndex)
    assert index.keys == (1, 4, 6)
    assert index.members(6).tolist() == [0, 2]
    assert index.counts() == {1: 1, 4: 1, 6: 2}
    assert index.counts(negatives=True) == {1: 3, 4: 3, 6: 2}
    with pytest.raises(ValueError, match="not one of the task's class keys"):
        index.members(5)
    ml = index_labels(OVERLAPPING, ML)
    assert ml.members(0).tolist() == [0, 2, 3]
    assert len(ml) == 8


def test_sample_episode_dispatches_every_kind() -> None:
    rng = np.random.default_rng(0)
    assert sample_episode(index_labels(np.repeat([0, 1, 2], 4), MC), 1, 1, rng, [2, 1]).classes == (2, 1)
    assert sample_episode(index_labels(np.repeat([1, 4, 6], 4), ORD), 1, 1, rng, [6, 1]).classes == (1, 6)
    assert sample_episode(index_labels([0, 1] * 4, BIN), 1, 1, rng).classes == (0, 1)
    labels = np.random.default_rng(0).integers(0, 2, (60, 3))
    assert sample_episode(index_labels(labels, ML), 1, 1, rng, [2, 0]).classes == (2, 0)


def test_relabel_description_keeps_identifiers_and_order() -> None:
    d = TaskDescription(MC, {0: "a", 1: "b", 2: "c"}, "task", "domain")
    r = relabel_description(d, [2, 0])
    assert dict(r.classes) == {0: "c", 1: "a"}
    assert (r.task_identifier, r.domain_identifier) == (
        "task",
        "domain",
    )
    b = TaskDescription(BIN, {0: "no", 1: "yes"}, "b")
    assert relabel_description(b, [0, 1]) is b
    with pytest.raises(ValueError, match=r"\[5\]"):
        relabel_description(d, [5, 0])
