"""Task sources: the base class (incl. 0.0.6 subclasses), tensor, wrap, subset and concat sources."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, IterableDataset, Subset

from torchcross.compat.data.task_source import LegacyTaskSource
from torchcross.data import (
    ConcatTaskSource,
    SubsetTaskSource,
    TaskSource,
    TensorTaskSource,
    canonical_labels,
)
from torchcross.data.capabilities import BatchReadable
from torchcross.data.wrap_source import WrapTaskSource
from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import TaskDescription, TaskTarget

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mc", "dom")
BIN = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "bin")
ML = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z"}, "ml")
ORD = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c", 8: "d", 10: "e"}, "ord")

RAW_LABELS = {
    "mc": (MC, [0, 2, 2, 1, 2, 0]),
    "bin": (BIN, [[1], [0], [1], [1], [1], [0]]),
    "ml": (ML, [[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]]),
    "ord": (ORD, [10, 1, 4, 4, 10, 6]),
}


def _reference_counts(canon: np.ndarray, desc: TaskDescription) -> tuple[dict, dict]:
    """Independent per-class counts by looping over examples."""
    n = len(canon)
    pos = {}
    for j, key in enumerate(desc.class_keys):
        if desc.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            pos[key] = sum(int(row[j]) for row in canon.tolist())
        else:
            pos[key] = sum(int(y == key) for y in canon.reshape(n).tolist())
    return pos, {k: n - v for k, v in pos.items()}


class OldStyleSource(LegacyTaskSource):
    """Like medimeta 0.0.6's reader: sets attributes, never calls super().__init__()."""

    def __init__(self, labels: np.ndarray, with_description: bool = True) -> None:
        self.task_target = TaskTarget.BINARY_CLASSIFICATION
        self.classes = {0: "healthy", 1: "sick"}
        self.task_identifier = "Old: task"
        self.domain_identifier = "Old domain"
        if with_description:
            self.task_description = TaskDescription(
                self.task_target, self.classes, self.task_identifier, self.domain_identifier
            )
        self.labels = labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((2,), float(index)), torch.as_tensor(self.labels[index])

    def __len__(self) -> int:
        return len(self.labels)


class CountingDataset(Dataset):
    """A torchvision-like dataset that counts how often an item is decoded."""

    def __init__(self, targets: list[int], attribute: str = "targets") -> None:
        setattr(self, attribute, targets)
        self._targets = targets
        self.decoded = 0

    def __len__(self) -> int:
        return len(self._targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        self.decoded += 1
        return torch.full((3,), float(index)), self._targets[index]


def _tensor_source(desc: TaskDescription = MC, n: int = 6) -> TensorTaskSource:
    labels = RAW_LABELS[desc.task_identifier][1][:n]
    return TensorTaskSource(torch.arange(float(n))[:, None], labels, desc)


# --------------------------------------------------------------------------- TaskSource base and 0.0.6


@pytest.mark.parametrize("with_description", [True, False])
def test_0_0_6_subclass_without_super_init_works(with_description: bool) -> None:
    src = OldStyleSource(np.array([[0], [1], [1], [1]]), with_description=with_description)
    assert src.task_description == TaskDescription(
        "BINARY_CLASSIFICATION", {0: "healthy", 1: "sick"}, "Old: task", "Old domain"
    )
    np.testing.assert_array_equal(canonical_labels(src), [[0], [1], [1], [1]])
    assert src.class_counts() == {0: 1, 1: 3}
    assert src.class_counts(neg=True) == {0: 3, 1: 1}


def test_0_0_6_subclass_with_flat_binary_labels_is_normalised() -> None:
    src = OldStyleSource(np.array([0, 1, 1]))
    assert canonical_labels(src).shape == (3, 1)


def test_derived_description_follows_attribute_changes() -> None:
    src = OldStyleSource(np.array([0, 1]), with_description=False)
    first = src.task_description
    assert src.task_description is first  # memoised
    src.classes = {0: "neg", 1: "pos"}
    assert src.task_description.classes == {0: "neg", 1: "pos"}


def test_0_0_6_attributes_are_derived_from_the_description() -> None:
    src = OldStyleSource(np.array([0, 1]))
    del src.task_target, src.classes, src.task_identifier, src.domain_identifier
    assert src.task_target is TaskTarget.BINARY_CLASSIFICATION
    assert src.classes == {0: "healthy", 1: "sick"}
    assert src.task_identifier == "Old: task"
    assert src.domain_identifier == "Old domain"


def test_core_sources_have_no_0_0_6_attributes() -> None:
    """The derived 0.0.6 attributes live in torchcross.compat: a core source has only its description."""
    src = _tensor_source(ORD)
    for name in ("task_target", "classes", "task_identifier", "domain_identifier"):
        assert not hasattr(src, name), name
    assert src.task_description.task_target is TaskTarget.ORDINAL_REGRESSION


def test_missing_description_is_an_attribute_error_with_the_fix() -> None:
    class Bare(LegacyTaskSource):
        def __getitem__(self, index: int) -> int:
            return index

    src = Bare()
    with pytest.raises(AttributeError, match=r"set self.task_description = TaskDescription"):
        _ = src.task_description
    with pytest.raises(AttributeError, match="no attribute 'task_target'"):
        _ = src.task_target
    with pytest.raises(AttributeError, match="no attribute 'whatever'"):
        _ = src.whatever
    assert not hasattr(src, "task_description")

    class CoreBare(TaskSource):  # the core base derives nothing: a plain AttributeError
        def __getitem__(self, index: int) -> int:
            return index

    with pytest.raises(AttributeError, match="no attribute 'task_description'"):
        _ = CoreBare().task_description


def test_base_len_defaults_to_the_number_of_labels() -> None:
    class Minimal(TaskSource):
        def __init__(self) -> None:
            self.task_description = MC
            self.labels = [0, 1, 2]

        def __getitem__(self, index: int) -> int:
            return index

    assert len(Minimal()) == 3


def test_canonical_labels_is_cached_until_labels_are_replaced() -> None:
    src = OldStyleSource(np.array([0, 1, 1]))
    first = canonical_labels(src)
    assert canonical_labels(src) is first
    src.labels = np.array([[1], [1]])
    np.testing.assert_array_equal(canonical_labels(src), [[1], [1]])


def test_canonical_labels_of_own_sources_is_free() -> None:
    src = _tensor_source(BIN)
    assert canonical_labels(src) is src.labels


def test_canonical_labels_works_without_a_dict() -> None:
    class Slotted:
        __slots__ = ("labels", "task_description")

    s = Slotted()
    s.labels, s.task_description = [1, 0], BIN
    np.testing.assert_array_equal(canonical_labels(s), [[1], [0]])


@pytest.mark.parametrize("kind", sorted(RAW_LABELS))
def test_counts_are_exact_for_every_kind(kind: str) -> None:
    desc, raw = RAW_LABELS[kind]
    src = TensorTaskSource(torch.zeros(len(raw), 2), raw, desc)
    pos, neg = _reference_counts(normalize_labels(raw, desc), desc)
    assert src.class_counts() == pos
    assert src.class_counts(neg=True) == neg
    assert min(neg.values()) >= 0


# what torchcross 0.0.6 returned for these labels (np.bincount / column sums), with neg=True
# fixed to count negatives (0.0.6 returned ``positives - total``, i.e. minus the negatives)
ARRAYS_0_0_6 = {
    "mc": ([2, 1, 3], [4, 5, 3]),
    "bin": ([4], [2]),  # one entry: the positives of a (N, 1) label column
    "ml": ([3, 1, 4], [3, 5, 2]),
    "ord": ([1, 2, 1, 0, 2], [5, 4, 5, 6, 4]),  # in the order of the classes' keys
}


@pytest.mark.parametrize("kind", sorted(RAW_LABELS))
def test_get_num_samples_per_class_returns_0_0_6_arrays(kind: str) -> None:
    desc, raw = RAW_LABELS[kind]
    src = TensorTaskSource(torch.zeros(len(raw), 2), raw, desc)
    pos, neg = src.get_num_samples_per_class(), src.get_num_samples_per_class(neg=True)
    assert isinstance(pos, np.ndarray)
    assert pos.dtype == np.int64
    assert pos.tolist() == ARRAYS_0_0_6[kind][0]
    assert neg.tolist() == ARRAYS_0_0_6[kind][1]
    assert (neg >= 0).all()
    # the paper's class weighting runs on them
    weights = (neg.astype(np.float32) + 1) / (pos.astype(np.float32) + 1)
    assert weights.shape == pos.shape


def test_get_num_samples_per_class_rejects_regression() -> None:
    src = TensorTaskSource(torch.zeros(3, 1), [0.5, 1.0, 2.0], TaskDescription("REGRESSION"))
    with pytest.raises(ValueError, match="not defined for REGRESSION"):
        src.get_num_samples_per_class()


# --------------------------------------------------------------------------- TensorTaskSource


def test_tensor_source_items_batches_and_labels() -> None:
    src = _tensor_source(BIN)
    x, y = src[2]
    assert x.tolist() == [2.0]
    assert y.tolist() == [1]
    xb, yb = src.get_batch(np.array([0, 1]))
    assert xb.shape == (2, 1)
    assert yb.tolist() == [[1], [0]]
    xb, yb = src.get_batch([-1, 5, 0])
    assert xb.ravel().tolist() == [5.0, 5.0, 0.0]
    assert yb.tolist() == [[0], [0], [1]]
    for bad in ([6], [-7]):
        with pytest.raises(IndexError, match=rf"indices \[{bad[0]}\] out of range for 6 examples"):
            src.get_batch(bad)
    assert len(src) == 6


def test_tensor_source_accepts_numpy_inputs_and_read_only_labels() -> None:
    labels = np.array([0, 1, 2], dtype=np.int64)
    labels.flags.writeable = False
    src = TensorTaskSource(np.ones((3, 2), dtype=np.float32), labels, MC)
    assert isinstance(src.inputs, torch.Tensor)
    assert int(src[2][1]) == 2


@pytest.mark.parametrize(
    ("inputs", "labels", "desc", "error", "match"),
    [
        (
            torch.zeros(3, 1),
            [0, 1, 2],
            {"task_target": "x"},
            TypeError,
            "must be a TaskDescription, got dict",
        ),
        (torch.zeros(2, 1), [0, 1, 2], MC, ValueError, "differ in length: 2 inputs, 3 labels"),
        (torch.zeros(0, 1), [], MC, ValueError, "'mc' is empty"),
        (torch.tensor(1.0), [0], MC, ValueError, "leading example dimension"),
        (torch.zeros(2, 1), [0.0, 1.0], MC, TypeError, "must be integers"),
        (torch.zeros(2, 1), [0, 5], MC, ValueError, r"values \[5\] outside"),
        (torch.zeros(2, 1), [[0, 1], [1, 1]], BIN, ValueError, r"must have shape \(N,\) or \(N, 1\)"),
    ],
)
def test_tensor_source_errors(inputs: object, labels: object, desc: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        TensorTaskSource(inputs, labels, desc)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- WrapTaskSource


@pytest.mark.parametrize("attribute", ["targets", "labels"])
def test_wrap_reads_label_attributes_without_decoding(attribute: str) -> None:
    ds = CountingDataset([0, 2, 1, 1], attribute)
    src = WrapTaskSource(ds, MC)
    assert ds.decoded == 0
    np.testing.assert_array_equal(src.labels, [0, 2, 1, 1])
    x, y = src[1]
    assert ds.decoded == 1
    assert x.tolist() == [1.0, 1.0, 1.0]
    assert y.dtype == torch.int64
    assert int(y) == 2


def test_wrap_reads_targets_through_a_torch_subset() -> None:
    ds = CountingDataset([0, 2, 1, 1])
    src = WrapTaskSource(Subset(ds, [3, 1]), MC)
    assert ds.decoded == 0
    np.testing.assert_array_equal(src.labels, [1, 2])


def test_wrap_ignores_attributes_of_the_wrong_length_and_falls_back_to_items() -> None:
    ds = CountingDataset([0, 2, 1, 1], attribute="unused")
    ds.labels = ["a", "b", "c"]  # class names, not one label per item
    src = WrapTaskSource(ds, MC)
    assert ds.decoded == 4
    np.testing.assert_array_equal(src.labels, [0, 2, 1, 1])


def test_wrap_explicit_labels_and_label_fn_win_and_decode_nothing() -> None:
    ds = CountingDataset([0, 2, 1, 1])
    src = WrapTaskSource(ds, MC, [1, 1, 1, 1])
    assert src.labels.tolist() == [1, 1, 1, 1]
    assert int(src[0][1]) == 1  # items carry the labels the source was given
    src = WrapTaskSource(ds, MC, label_fn=lambda d: [2] * len(d))
    assert src.labels.tolist() == [2, 2, 2, 2]
    assert ds.decoded == 1


def test_wrap_a_plain_list_of_pairs_reads_items_once() -> None:
    data = [(torch.zeros(2), torch.tensor([1, 0, 1])), (torch.ones(2), torch.tensor([0, 0, 1]))]
    src = WrapTaskSource(data, ML)
    assert src.labels.tolist() == [[1, 0, 1], [0, 0, 1]]
    assert src[1][1].tolist() == [0, 0, 1]


def test_wrap_a_dataset_of_inputs_only_with_labels() -> None:
    src = WrapTaskSource(torch.zeros(3, 4), BIN, [1, 0, 1])
    x, y = src[0]
    assert x.shape == (4,)
    assert y.tolist() == [1]


def test_wrap_keeps_the_0_0_6_signature() -> None:
    data = [(0, 1), (1, 0), (2, 1)]
    positional = WrapTaskSource(data, TaskTarget.BINARY_CLASSIFICATION, {0: "n", 1: "p"})
    by_name = WrapTaskSource(
        data,
        task_target="BINARY_CLASSIFICATION",
        classes={0: "n", 1: "p"},
        task_identifier="t",
        domain_identifier="d",
        label_fn=lambda d: [y for _, y in d],
    )
    assert positional.task_description == TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "p"})
    assert by_name.task_description == TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "p"}, "t", "d")
    assert positional.class_counts() == by_name.class_counts() == {0: 1, 1: 2}


def test_wrap_a_task_source_inherits_its_description_and_get_batch() -> None:
    inner = _tensor_source(MC)
    src = WrapTaskSource(inner)
    assert src.task_description == MC
    np.testing.assert_array_equal(src.labels, inner.labels)
    x, y = src.get_batch([5, 0])
    assert x.ravel().tolist() == [5.0, 0.0]
    assert y.tolist() == [0, 0]
    # a re-described task gets its own labels in get_batch too
    as_ord = TaskDescription("ORDINAL_REGRESSION", {0: "lo", 1: "mid", 2: "hi"})
    assert WrapTaskSource(inner, as_ord).get_batch([1])[1].tolist() == [2]


def test_wrap_has_no_get_batch_when_the_dataset_has_none() -> None:
    assert not hasattr(WrapTaskSource(CountingDataset([0, 1]), MC), "get_batch")
    assert hasattr(WrapTaskSource(_tensor_source()), "get_batch")


class _Stream(IterableDataset):
    def __iter__(self):  # pragma: no cover - never iterated
        yield from ()


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((CountingDataset([0, 1]),), {}, TypeError, "needs a task_description .*for CountingDataset"),
        ((CountingDataset([0, 1]), MC), {"task_target": "BINARY_CLASSIFICATION"}, TypeError, "either"),
        ((CountingDataset([0, 1]), MC), {"task_identifier": "x"}, TypeError, "either"),
        (
            (CountingDataset([0, 1]), "BINARY_CLASSIFICATION"),
            {"task_target": "x"},
            TypeError,
            "task_target given twice",
        ),
        (
            (CountingDataset([0, 1]), "BINARY_CLASSIFICATION", BIN.classes),
            {"classes": {}},
            TypeError,
            "classes given twice",
        ),
        (
            (CountingDataset([0, 1]), {"classes": {}}),
            {},
            TypeError,
            "task_description must be a TaskDescription, got dict",
        ),
        ((_Stream(), MC), {}, TypeError, "needs a map-style dataset, got _Stream"),
        ((42, MC), {}, TypeError, "needs a map-style dataset, got int"),
        ((CountingDataset([]), MC), {}, ValueError, "cannot wrap an empty dataset as task 'mc'"),
        (
            (CountingDataset([0, 1]), MC, [0, 1, 2]),
            {},
            ValueError,
            "labels has 3 labels but the dataset has 2 items",
        ),
        ((CountingDataset([0, 1]), MC), {"label_fn": "targets"}, TypeError, "label_fn must be callable"),
        (
            (CountingDataset([0, 7]), MC),
            {},
            ValueError,
            r"values \[7\] .*labels read from dataset.targets; pass labels=",
        ),
        (
            (CountingDataset([0, 1]), MC, [0.5, 1.0]),
            {},
            TypeError,
            r"must be integers .*labels read from labels;",
        ),
        (
            ([torch.zeros(2), torch.ones(2)], MC),
            {},
            TypeError,
            "cannot read labels from item 0 .*not an \\(input, label\\) pair",
        ),
    ],
)
def test_wrap_errors(args: tuple, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        WrapTaskSource(*args, **kwargs)


# --------------------------------------------------------------------------- SubsetTaskSource


def test_subset_selects_maps_and_allows_negative_and_repeated_indices() -> None:
    src = _tensor_source(MC)
    sub = SubsetTaskSource(src, [5, -6, 5])
    assert sub.indices.tolist() == [5, 0, 5]
    assert sub.indices.dtype == np.int64
    assert sub.labels.tolist() == [0, 0, 0]
    assert len(sub) == 3
    assert sub[1][0].tolist() == [0.0]
    assert sub.task_description == MC
    assert sub.class_counts() == {0: 3, 1: 0, 2: 0}
    x, y = sub.get_batch([0, 1])
    assert x.ravel().tolist() == [5.0, 0.0]
    assert y.tolist() == [0, 0]


@pytest.mark.parametrize(
    "indices", [torch.tensor([1, 3]), np.array([1, 3], dtype=np.int32), range(1, 4, 2), (i for i in (1, 3))]
)
def test_subset_accepts_any_integer_sequence(indices: object) -> None:
    assert SubsetTaskSource(_tensor_source(), indices).indices.tolist() == [1, 3]


def test_subset_of_a_0_0_6_source_has_canonical_labels_and_no_get_batch() -> None:
    sub = SubsetTaskSource(OldStyleSource(np.array([0, 1, 1])), [2, 0])
    assert sub.labels.tolist() == [[1], [0]]
    assert sub.task_description.task_identifier == "Old: task"
    assert not hasattr(sub, "get_batch")
    assert sub[0][0].tolist() == [2.0, 2.0]


def test_a_missing_get_batch_says_that_the_wrapped_source_has_none() -> None:
    sub = SubsetTaskSource(OldStyleSource(np.array([0, 1, 1])), [2, 0])
    wrap = WrapTaskSource(CountingDataset([0, 1]), MC)
    assert not isinstance(sub, BatchReadable)
    assert not isinstance(wrap, BatchReadable)
    with pytest.raises(AttributeError, match="the wrapped OldStyleSource has no get_batch"):
        _ = sub.get_batch
    with pytest.raises(AttributeError, match="the wrapped CountingDataset has no get_batch"):
        _ = wrap.get_batch


def test_subset_and_wrap_of_a_batch_readable_source_keep_get_batch_through_pickle() -> None:
    for source in (SubsetTaskSource(_tensor_source(), [4, 1]), WrapTaskSource(_tensor_source())):
        assert isinstance(source, BatchReadable)
        assert isinstance(source, (SubsetTaskSource, WrapTaskSource))
        copy = pickle.loads(pickle.dumps(source))
        assert type(copy) is type(source)
        assert copy.get_batch([1])[0].tolist() == source.get_batch([1])[0].tolist()


@pytest.mark.parametrize(
    ("indices", "error", "match"),
    [
        (
            [0, 6],
            ValueError,
            r"indices \[6\] are out of range for a source of 6 examples; valid indices are -6..5",
        ),
        ([-7], ValueError, r"indices \[-7\] are out of range"),
        ([], ValueError, "indices are empty"),
        ([[0, 1]], ValueError, r"one-dimensional, got shape \(1, 2\)"),
        ([0.0, 1.0], TypeError, "must be ints, got dtype float64"),
        (np.array([True, False, True, False, False, False]), TypeError, "boolean mask; use np.flatnonzero"),
        (3, TypeError, "indices must be a sequence of ints, got int"),
    ],
)
def test_subset_errors(indices: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SubsetTaskSource(_tensor_source(), indices)


@pytest.mark.parametrize("bad", [[(0, 1)], CountingDataset([0, 1]), _Stream()])
def test_subset_needs_a_map_style_task_source(bad: object) -> None:
    with pytest.raises(TypeError, match="SubsetTaskSource needs a"):
        SubsetTaskSource(bad, [0])


# --------------------------------------------------------------------------- ConcatTaskSource


def test_concat_of_different_tasks_yields_items_with_descriptions() -> None:
    a, b = _tensor_source(MC, 2), _tensor_source(BIN, 3)
    cat = ConcatTaskSource([a, b])
    assert len(cat) == 5
    assert cat.cumulative_sizes == [2, 5]
    assert cat.datasets == [a, b]
    assert cat.task_descriptions == [MC, BIN]
    (x, y), desc = cat[3]
    assert (x.tolist(), y.tolist(), desc) == ([1.0], [0], BIN)
    (x, _), desc = cat[-5]
    assert (x.tolist(), desc) == ([0.0], MC)
    assert [cat[i][1].task_identifier for i in range(5)] == ["mc", "mc", "bin", "bin", "bin"]


def test_concat_of_different_tasks_has_no_single_description() -> None:
    cat = ConcatTaskSource([_tensor_source(MC, 2), _tensor_source(BIN, 3)])
    for name in ("task_description", "labels"):
        with pytest.raises(AttributeError, match=rf"different tasks \['mc', 'bin'\] has no single {name}"):
            getattr(cat, name)
    assert not hasattr(cat, "task_description")
    with pytest.raises(AttributeError, match="no attribute 'other'"):
        _ = cat.other


def test_concat_of_one_task_has_its_description_and_labels() -> None:
    train, val = _tensor_source(MC, 4), SubsetTaskSource(_tensor_source(MC), [5, 4])
    cat = ConcatTaskSource(iter([train, val]))
    assert cat.task_description == MC
    assert cat.task_description.task_target is TaskTarget.MULTICLASS_CLASSIFICATION
    assert cat.labels.tolist() == [0, 2, 2, 1, 0, 2]
    assert cat.class_counts() == {0: 2, 1: 1, 2: 3}
    assert canonical_labels(cat) is cat.labels


def test_concat_skips_empty_members() -> None:
    class Empty(TaskSource):
        def __init__(self) -> None:
            self.task_description, self.labels = BIN, np.zeros((0, 1), dtype=np.int64)

        def __getitem__(self, index: int) -> None:  # pragma: no cover - never called
            raise IndexError(index)

    cat = ConcatTaskSource([Empty(), _tensor_source(BIN, 2)])
    assert cat[0][0][0].tolist() == [0.0]


@pytest.mark.parametrize("index", [5, -6, 100])
def test_concat_index_out_of_range(index: int) -> None:
    cat = ConcatTaskSource([_tensor_source(MC, 2), _tensor_source(BIN, 3)])
    with pytest.raises(IndexError, match=f"index {index} is out of range for a ConcatTaskSource of 5"):
        cat[index]


@pytest.mark.parametrize(
    ("datasets", "error", "match"),
    [
        ([], ValueError, "needs at least one task source, got an empty list"),
        (_tensor_source(), TypeError, "must be a list of task sources, got TensorTaskSource"),
        (5, TypeError, "must be a list of task sources, got int"),
        ([_tensor_source(), [(0, 1)]], TypeError, r"datasets\[1\]"),
    ],
)
def test_concat_errors(datasets: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ConcatTaskSource(datasets)  # type: ignore[arg-type]


def test_concat_of_only_empty_sources_is_an_error() -> None:
    empty = OldStyleSource(np.zeros((0, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="only empty task sources is empty"):
        ConcatTaskSource([empty])


def test_0_0_6_import_path_serves_classes_defined_in_their_own_modules() -> None:
    import torchcross.data.task_source as module
    from torchcross.data.batched_source import BatchedTaskSource

    assert module.WrapTaskSource is WrapTaskSource
    assert module.BatchedTaskSource is BatchedTaskSource
    assert set(module.__all__) >= {
        "WrapTaskSource",
        "BatchedTaskSource",
        "SubsetTaskSource",
        "ConcatTaskSource",
    }
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = module.Nope


# --------------------------------------------------------------------------- pickling (spawn workers)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _tensor_source(ORD),
        lambda: WrapTaskSource([(0, 1), (1, 0)], BIN),
        lambda: SubsetTaskSource(_tensor_source(), [3, 1]),
        lambda: ConcatTaskSource([_tensor_source(MC, 2), _tensor_source(BIN, 3)]),
        lambda: OldStyleSource(np.array([0, 1])),
    ],
    ids=["tensor", "wrap", "subset", "concat", "0.0.6"],
)
def test_sources_pickle(make: Callable[[], TaskSource]) -> None:
    src = make()
    if hasattr(src, "labels"):
        canonical_labels(src)  # fills the cache, which travels with the pickle
    back = pickle.loads(pickle.dumps(src))
    assert len(back) == len(src)
    for i in range(len(src)):
        assert repr(back[i]) == repr(src[i])
    if hasattr(src, "labels"):
        np.testing.assert_array_equal(canonical_labels(back), canonical_labels(src))
