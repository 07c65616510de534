"""The MedIMeta authors' multi-label episodes (``multilabel_sampler="medimeta"``): invariants, determinism.

The rule (0.0.6 ``few_shot.py``): per label ``k`` random positives and ``k`` random negatives, the union
shuffled, the shortest prefix meeting the quota, then one greedy pass removing what is not needed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from torchcross.data import TensorTaskSource
from torchcross.data.metadataset import sample_episode_set
from torchcross.data.metadataset.fixed_shot import FewShotMetaDataset
from torchcross.sampling import (
    MULTILABEL_SAMPLERS,
    index_labels,
    sample_multilabel_episode,
    trim_to_quota,
)
from torchcross.tasks.task import TaskDescription


@st.composite
def _labels(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(24, 80))
    width = draw(st.integers(2, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.15, 0.85, width)
    return (rng.random((n, width)) < density).astype(np.int64)


def _meets(rows: np.ndarray, quota: int) -> bool:
    positives = rows.sum(axis=0)
    return bool((positives >= quota).all() and (len(rows) - positives >= quota).all())


def _needed(rows: np.ndarray, quota: int) -> bool:
    """Every example is needed: without any one of them, some label misses its quota."""
    return all(not _meets(np.delete(rows, i, axis=0), quota) for i in range(len(rows)))


def _episode(labels: np.ndarray, k: int, q: int, seed: int, columns: list[int] | None = None):
    index = index_labels(labels, "MULTILABEL_CLASSIFICATION")
    rng = np.random.default_rng(seed)
    try:
        return sample_multilabel_episode(index, k, q, rng, columns, sampler="medimeta")
    except ValueError:
        assume(False)  # too few positives or negatives for these quotas
        raise


@settings(max_examples=60, deadline=None)
@given(_labels(), st.integers(1, 3), st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_every_label_gets_its_quota_and_every_example_kept_is_needed(
    labels: np.ndarray, k: int, q: int, seed: int
) -> None:
    ep = _episode(labels, k, q, seed)
    support, query = labels[ep.support], labels[ep.query]
    width = labels.shape[1]
    assert _meets(support, k)
    assert _needed(support, k)
    assert len(set(ep.support.tolist())) == len(ep.support)
    # a subset of the 2k draws per label, and at least k positives and k other negatives
    assert 2 * k <= len(ep.support) <= 2 * k * width
    assert not set(ep.support.tolist()) & set(ep.query.tolist())
    if q:
        assert _meets(query, q)
        assert _needed(query, q)
        assert 2 * q <= len(ep.query) <= 2 * q * width
    else:
        assert len(ep.query) == 0
    assert ep.classes == tuple(range(width))


@settings(max_examples=30, deadline=None)
@given(_labels(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_one_label_gives_exactly_k_positives_and_k_negatives(labels: np.ndarray, k: int, seed: int) -> None:
    ep = _episode(labels, k, k, seed, columns=[1])
    for part in (ep.support, ep.query):
        assert sorted(labels[part, 1].tolist()) == [0] * k + [1] * k


@settings(max_examples=30, deadline=None)
@given(_labels(), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_the_same_seed_gives_the_same_episode(labels: np.ndarray, k: int, q: int, seed: int) -> None:
    a, b = _episode(labels, k, q, seed), _episode(labels, k, q, seed)
    assert np.array_equal(a.support, b.support)
    assert np.array_equal(a.query, b.query)


@settings(max_examples=60, deadline=None)
@given(_labels(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_the_trim_keeps_a_needed_subset_of_a_shortest_meeting_prefix(
    labels: np.ndarray, k: int, seed: int
) -> None:
    assume(_meets(labels, k))
    rows = labels[np.random.default_rng(seed).permutation(len(labels))]
    kept = trim_to_quota(rows, k)
    assert (np.diff(kept) > 0).all()
    assert _meets(rows[kept], k)
    assert _needed(rows[kept], k)
    # no shorter prefix of at least 2k examples meets the quota than the one the trim started from
    end = int(kept[-1]) + 1
    assert not any(_meets(rows[:i], k) for i in range(2 * k, end))


def _source(labels: np.ndarray) -> TensorTaskSource:
    names = {i: f"label {i}" for i in range(labels.shape[1])}
    d = TaskDescription("MULTILABEL_CLASSIFICATION", names, "findings")
    return TensorTaskSource(torch.zeros(len(labels), 1), torch.as_tensor(labels), d)


_LABELS = (np.random.default_rng(7).random((120, 4)) < [0.2, 0.4, 0.5, 0.7]).astype(np.int64)


def test_episodes_are_a_pure_function_of_seed_and_index_and_differ_from_the_cover() -> None:
    kwargs = {"n_shot": 3, "n_query": 4, "length": 12, "seed": 5, "output_indices": True}
    theirs = FewShotMetaDataset(_source(_LABELS), multilabel_sampler="medimeta", **kwargs)
    again = FewShotMetaDataset(_source(_LABELS), multilabel_sampler="medimeta", **kwargs)
    forward = [theirs.sample_indices(i) for i in range(12)]
    backward = [again.sample_indices(i) for i in reversed(range(12))][::-1]  # another order, as a worker
    assert all(np.array_equal(a.support, b.support) for a, b in zip(forward, backward))
    assert all(np.array_equal(a.query, b.query) for a, b in zip(forward, backward))
    ours = FewShotMetaDataset(_source(_LABELS), **kwargs)
    cover = [ours.sample_indices(i) for i in range(12)]
    assert any(set(a.support.tolist()) != set(b.support.tolist()) for a, b in zip(forward, cover))
    # the authors' sets are larger: every label draws its own k positives and negatives first
    assert sum(len(e.support) for e in forward) > sum(len(e.support) for e in cover)


def test_the_episode_set_records_the_sampler_only_when_it_is_not_the_cover() -> None:
    theirs = sample_episode_set(_source(_LABELS), 3, 2, 2, multilabel_sampler="medimeta")
    assert theirs.sampling["multilabel_sampler"] == "medimeta"
    ours = sample_episode_set(_source(_LABELS), 3, 2, 2)
    assert "multilabel_sampler" not in ours.sampling
    assert ours.first_difference(theirs) == "its 'sampling' (the settings the episodes were drawn with)"
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
    binary = TensorTaskSource(torch.zeros(40, 1), torch.arange(40) % 2, d)
    assert (
        "multilabel_sampler"
        not in sample_episode_set(binary, 2, 2, 2, multilabel_sampler="medimeta").sampling
    )


def test_an_unknown_sampler_is_refused_naming_the_known_ones() -> None:
    assert set(MULTILABEL_SAMPLERS) == {"cover", "medimeta"}
    with pytest.raises(
        ValueError, match="multilabel_sampler must be one of 'cover', 'medimeta', got 'greedy'"
    ):
        FewShotMetaDataset(_source(_LABELS), multilabel_sampler="greedy")
    with pytest.raises(ValueError, match="multilabel_sampler must be one of 'cover', 'medimeta', got 'x'"):
        sample_multilabel_episode(_LABELS, 1, 1, np.random.default_rng(0), sampler="x")
