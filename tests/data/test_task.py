"""The task vocabulary: TaskTarget, TaskDescription, Task (incl. torchcross 0.0.6 pickles)."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from torchcross.tasks.task import FrozenClasses, Task, TaskDescription, TaskTarget

BIN = {0: "no", 1: "yes"}


def test_task_target_names_and_values_match_0_0_6() -> None:
    assert [(m.name, m.value) for m in TaskTarget] == [
        ("MULTICLASS_CLASSIFICATION", 1),
        ("BINARY_CLASSIFICATION", 2),
        ("MULTILABEL_CLASSIFICATION", 3),
        ("ORDINAL_REGRESSION", 4),
        ("REGRESSION", 5),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TaskTarget.ORDINAL_REGRESSION, TaskTarget.ORDINAL_REGRESSION),
        ("BINARY_CLASSIFICATION", TaskTarget.BINARY_CLASSIFICATION),
        (" multilabel_classification ", TaskTarget.MULTILABEL_CLASSIFICATION),
    ],
)
def test_task_target_parse(value: object, expected: TaskTarget) -> None:
    assert TaskTarget.parse(value) is expected


def test_task_target_parse_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown task target 'SEGMENTATION'.*BINARY_CLASSIFICATION"):
        TaskTarget.parse("SEGMENTATION")
    with pytest.raises(TypeError, match="task_target must be a TaskTarget or its name, got int"):
        TaskTarget.parse(2)


def test_description_normalises_its_fields() -> None:
    d = TaskDescription("ordinal_regression", {np.int64(4): "b", 1: "a"}, None, None)
    assert d.task_target is TaskTarget.ORDINAL_REGRESSION
    assert isinstance(d.classes, FrozenClasses)
    assert d.class_keys == (1, 4)
    assert d.num_classes == 2
    assert (d.task_identifier, d.domain_identifier) == (None, None)  # None is kept, as in 0.0.6
    assert d.classes == {1: "a", 4: "b"}
    assert TaskDescription("BINARY_CLASSIFICATION", BIN).task_identifier == ""


def test_description_is_frozen_hashable_and_compares_by_value() -> None:
    a = TaskDescription("BINARY_CLASSIFICATION", BIN, "t", "dom")
    b = TaskDescription(TaskTarget.BINARY_CLASSIFICATION, dict(BIN), "t", "dom")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != a.with_classes({0: "neg", 1: "pos"})
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'task_identifier'"):
        a.task_identifier = "other"  # type: ignore[misc]


def test_with_classes_keeps_kind_and_identifiers() -> None:
    d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "t", "dom")
    sub = d.with_classes({0: "c", 1: "a"})
    assert (sub.task_target, sub.task_identifier, sub.domain_identifier) == (d.task_target, "t", "dom")
    assert sub.classes == {0: "c", 1: "a"}


def test_regression_needs_no_classes() -> None:
    assert TaskDescription("REGRESSION").num_classes == 0
    assert TaskDescription("REGRESSION", None).classes == {}


@pytest.mark.parametrize(
    ("target", "classes", "error", "match"),
    [
        ("BINARY_CLASSIFICATION", [0, 1], TypeError, "classes must be a mapping"),
        ("MULTICLASS_CLASSIFICATION", {"0": "a", 1: "b"}, TypeError, "class keys must be ints, got '0'"),
        ("MULTICLASS_CLASSIFICATION", {True: "a", 2: "b"}, TypeError, "class keys must be ints"),
        ("MULTICLASS_CLASSIFICATION", {0: "only"}, ValueError, "needs at least two classes"),
        ("MULTICLASS_CLASSIFICATION", None, ValueError, "needs at least two classes .*got 0"),
        ("BINARY_CLASSIFICATION", {1: "a", 2: "b"}, ValueError, r"binary task must have class keys \{0, 1\}"),
        ("MULTICLASS_CLASSIFICATION", {0: "a", 2: "b"}, ValueError, r"keys must be 0..1, got \[0, 2\]"),
        ("MULTILABEL_CLASSIFICATION", {1: "a", 2: "b"}, ValueError, "only ORDINAL_REGRESSION"),
        ("CLUSTERING", BIN, ValueError, "unknown task target"),
    ],
)
def test_description_validation(target: str, classes: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        TaskDescription(target, classes)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["task_identifier", "domain_identifier"])
def test_description_identifiers_must_be_strings(field: str) -> None:
    with pytest.raises(TypeError, match=rf"{field} must be a str \(or None\), got int"):
        TaskDescription("BINARY_CLASSIFICATION", BIN, **{field: 3})


def test_ordinal_keys_may_have_gaps() -> None:
    d = TaskDescription("ORDINAL_REGRESSION", {10: "e", 1: "a", 4: "b", 6: "c", 8: "d"})
    assert d.class_keys == (1, 4, 6, 8, 10)


def test_description_pickle_round_trip() -> None:
    d = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b"}, "task", "domain")
    back = pickle.loads(pickle.dumps(d))
    assert back == d
    assert hash(back) == hash(d)
    assert isinstance(back.classes, FrozenClasses)


def _fragment(obj: object) -> bytes:
    """A self-contained protocol-2 pickle fragment of ``obj`` (no header, no STOP)."""
    return pickle.dumps(obj, protocol=2)[2:-1]


def _old_dict(items: dict[str, bytes]) -> bytes:
    return b"}(" + b"".join(_fragment(k) + v for k, v in items.items()) + b"u"


def _old_instance(name: str, state: bytes) -> bytes:
    # 0.0.6's TaskDescription and Task were plain (unfrozen) dataclasses in torchcross.tasks.task:
    # default pickling writes GLOBAL cls, NEWOBJ (cls.__new__(cls)), then BUILD with the __dict__.
    return f"ctorchcross.data.task\n{name}\n".encode() + b")\x81" + state + b"b"


def _old_description(**extra: object) -> bytes:
    state = {
        "task_target": TaskTarget.BINARY_CLASSIFICATION,
        "classes": {0: "healthy", 1: "glaucoma"},  # a plain dict in 0.0.6
        "task_identifier": "Glaucoma: Glaucoma suspect",
        **extra,
    }
    return _old_instance("TaskDescription", _old_dict({k: _fragment(v) for k, v in state.items()}))


def _stream(fragment: bytes) -> bytes:
    return b"\x80\x02" + fragment + b"."


def test_loads_0_0_6_description_pickle() -> None:
    d = pickle.loads(_stream(_old_description(domain_identifier="Retinal fundus")))
    assert d == TaskDescription(
        "BINARY_CLASSIFICATION", {0: "healthy", 1: "glaucoma"}, "Glaucoma: Glaucoma suspect", "Retinal fundus"
    )
    assert isinstance(d.classes, FrozenClasses)
    assert {d: 1}[d] == 1


def test_loads_0_0_6_description_pickle_without_domain() -> None:
    d = pickle.loads(_stream(_old_description()))
    assert d.domain_identifier is None  # the 0.0.6 class default
    assert d.task_identifier == "Glaucoma: Glaucoma suspect"


def test_setstate_validates_old_state() -> None:
    d = object.__new__(TaskDescription)
    with pytest.raises(ValueError, match="binary task must have class keys"):
        d.__setstate__({"task_target": TaskTarget.BINARY_CLASSIFICATION, "classes": {1: "a", 2: "b"}})


def test_loads_0_0_6_task_pickle() -> None:
    # medimeta's pre-sampled task lists: [Task(support=[(index, label)], query=..., description)]
    task_state = _old_dict(
        {
            "support": _fragment([(3, 0), (7, 1)]),
            "query": _fragment([(11, 1)]),
            "description": _old_description(domain_identifier="Retinal fundus"),
        }
    )
    tasks = pickle.loads(_stream(b"](" + _old_instance("Task", task_state) + b"e"))
    task = tasks[0]
    assert isinstance(task, Task)
    assert task.support == [(3, 0), (7, 1)]
    assert task.query == [(11, 1)]
    assert task.description.task_target is TaskTarget.BINARY_CLASSIFICATION
    assert task.description.domain_identifier == "Retinal fundus"


def test_task_holds_support_query_and_description() -> None:
    d = TaskDescription("BINARY_CLASSIFICATION", BIN, "t")
    support = (torch.zeros(2, 3), torch.tensor([[0], [1]]))
    t = Task(support, (torch.ones(1, 3), torch.tensor([[1]])), d)
    assert t.support is support
    assert t.description is d
    back = pickle.loads(pickle.dumps(t))
    assert torch.equal(back.query[0], t.query[0])
    assert back.description == d
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'support'"):
        t.support = None  # type: ignore[misc]


def test_task_rejects_a_non_description() -> None:
    with pytest.raises(TypeError, match=r"Task.description must be a TaskDescription, got dict"):
        Task([], [], {"task_target": "BINARY_CLASSIFICATION"})  # type: ignore[arg-type]


def test_frozen_classes_mapping_behaviour() -> None:
    fc = FrozenClasses({1: "a", 0: "b"})
    assert list(fc) == [1, 0]
    assert len(fc) == 2
    assert fc[1] == "a"
    assert fc == FrozenClasses({1: "a", 0: "b"})
    assert fc == {1: "a", 0: "b"}
    assert fc != [1, 0]
    assert hash(fc) == hash(FrozenClasses({1: "a", 0: "b"}))
    assert repr(fc) == "{1: 'a', 0: 'b'}"
    assert isinstance(fc, dict)
    for mutate in (
        lambda: fc.__setitem__(2, "c"),
        lambda: fc.__delitem__(1),
        lambda: fc.update({2: "c"}),
        lambda: fc.pop(1),
        lambda: fc.popitem(),
        lambda: fc.setdefault(2, "c"),
        fc.clear,
    ):
        with pytest.raises(TypeError, match=r"FrozenClasses is immutable; use classes.to_dict\(\)"):
            mutate()
    assert fc == {1: "a", 0: "b"}
    assert fc | {2: "c"} == {1: "a", 0: "b", 2: "c"}  # a new plain dict
    copy = fc.to_dict()
    copy[5] = "c"
    assert 5 not in fc
    assert pickle.loads(pickle.dumps(fc)) == fc
    assert FrozenClasses() == {}


def test_description_pickles_its_classes_as_a_plain_dict() -> None:
    # torchcross 0.0.6 cannot import FrozenClasses: the pickle must not name it
    d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"}, "t", "dom")
    data = pickle.dumps(d)
    assert b"FrozenClasses" not in data
    back = pickle.loads(data)
    assert back == d
    assert isinstance(back.classes, FrozenClasses)
    assert d.__getstate__() == {
        "task_target": TaskTarget.MULTICLASS_CLASSIFICATION,
        "classes": {0: "a", 1: "b"},
        "task_identifier": "t",
        "domain_identifier": "dom",
    }
    assert type(d.__getstate__()["classes"]) is dict


def test_loads_0_0_6_description_with_none_identifier() -> None:
    # 0.0.6's FewShotMetaDataset made TaskDescription(target, classes): identifiers None
    d = pickle.loads(_stream(_old_description(task_identifier=None, domain_identifier=None)))
    assert d.task_identifier is None
    assert d.domain_identifier is None
    assert pickle.loads(pickle.dumps(d)) == d


def test_pickled_task_holds_only_its_own_bytes() -> None:
    d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
    big = torch.zeros(100_000)
    labels = torch.arange(2).repeat(50)
    small = Task((big[:4].view(2, 2), labels[:2]), (big[4:8].view(2, 2), labels[2:4]), d)
    compact = Task(
        (big[:4].clone().view(2, 2), labels[:2].clone()),
        (big[4:8].clone().view(2, 2), labels[2:4].clone()),
        d,
    )
    assert len(pickle.dumps(small)) <= len(pickle.dumps(compact)) * 1.05
    assert len(pickle.dumps(small)) < 10_000  # the 400 kB storage is not in it
    back = pickle.loads(pickle.dumps(small))
    assert torch.equal(back.support[0], small.support[0])
    assert torch.equal(back.query[1], small.query[1])
    # pairs of (index, label view): every label pickles on its own
    pairs = Task([(i, lab) for i, lab in enumerate(labels.unbind(0))], [], d)
    assert len(pickle.dumps(pairs)) < 100 * 1500
    same = torch.tensor([1, 2])  # one object twice: one copy
    twice = pickle.loads(pickle.dumps(Task([same, same], [], d)))
    assert twice.support[0] is twice.support[1]
    assert small.support[0].untyped_storage().data_ptr() == big.untyped_storage().data_ptr()  # unchanged
