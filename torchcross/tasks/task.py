"""The task vocabulary: what kind of prediction a task asks for, and what a task is.

These are pure values. [`TaskDescription`][TaskDescription] is frozen and hashable, so
it can key per-task heads and metrics; [`Task`][Task] bundles a support set, a query set
and the description of the task they belong to.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Any, Generic, TypeVar

__all__ = ["Task", "TaskDescription", "TaskTarget", "rebuild_task"]


class TaskTarget(enum.Enum):
    """The kind of prediction a task asks for.

    Member names are the strings MedIMeta's ``info.yaml`` files store, so
    ``TaskTarget["BINARY_CLASSIFICATION"]`` parses them. The values match torchcross
    0.0.6, so task pickles written by it load.

    Examples:
        >>> TaskTarget["ORDINAL_REGRESSION"]
        <TaskTarget.ORDINAL_REGRESSION: 4>
    """

    MULTICLASS_CLASSIFICATION = 1
    BINARY_CLASSIFICATION = 2
    MULTILABEL_CLASSIFICATION = 3
    ORDINAL_REGRESSION = 4
    REGRESSION = 5

    @classmethod
    def parse(cls, value: TaskTarget | str) -> TaskTarget:
        """Return ``value`` as a member, accepting a member or its name (any case).

        Raises:
            ValueError: if ``value`` names no member.
            TypeError: if ``value`` is neither a member nor a string.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                names = ", ".join(m.name for m in cls)
                raise ValueError(f"unknown task target {value!r}; expected one of: {names}") from None
        raise TypeError(
            f"task_target must be a TaskTarget or its name, got {type(value).__name__}: {value!r}"
        )


class FrozenClasses(dict):
    """An immutable, hashable ``{class key: class name}`` dict.

    It is a `dict` (code written for torchcross 0.0.6 checks ``isinstance(classes, dict)``)
    whose mutating methods raise ``TypeError``. It pickles as a plain ``dict`` payload, and a
    [`TaskDescription`][TaskDescription] pickles its classes as a plain ``dict``, so
    pickles load in
    torchcross 0.0.6 too.

    Examples:
        >>> fc = FrozenClasses({0: "no", 1: "yes"})
        >>> isinstance(fc, dict), fc == {0: "no", 1: "yes"}, hash(fc) == hash(FrozenClasses(fc))
        (True, True, True)
        >>> fc[2] = "maybe"
        Traceback (most recent call last):
        ...
        TypeError: FrozenClasses is immutable; use classes.to_dict() (or dict(classes)) for a mutable copy
    """

    __slots__ = ("_hash",)

    def __init__(self, data: Mapping[int, str] | None = None) -> None:
        dict.__init__(self, data or {})
        self._hash: int | None = None

    def _immutable(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "FrozenClasses is immutable; use classes.to_dict() (or dict(classes)) for a mutable copy"
        )

    __setitem__ = __delitem__ = __ior__ = _immutable
    clear = pop = popitem = setdefault = update = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        if self._hash is None:
            self._hash = hash(tuple(self.items()))
        return self._hash

    def __repr__(self) -> str:
        return dict.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenClasses, (dict(self),))

    def __copy__(self) -> FrozenClasses:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenClasses:
        return self

    def to_dict(self) -> dict[int, str]:
        """Return a plain, mutable copy."""
        return dict(self)


def _validate_classes(task_target: TaskTarget, classes: Any) -> FrozenClasses:
    if not isinstance(classes, Mapping):
        raise TypeError(
            f"classes must be a mapping {{int key: str name}}, got {type(classes).__name__}: {classes!r}"
        )
    out: dict[int, str] = {}
    for key, name in classes.items():
        if isinstance(key, bool) or not isinstance(key, int):
            # numpy integers are accepted and converted; everything else is an error
            try:
                import numpy as np

                is_np_int = isinstance(key, np.integer)
            except ImportError:  # pragma: no cover - numpy is a core dependency
                is_np_int = False
            if not is_np_int:
                raise TypeError(
                    f"class keys must be ints, got {key!r} ({type(key).__name__}) in {dict(classes)!r}; "
                    "use e.g. {0: 'negative', 1: 'positive'}"
                )
        out[int(key)] = str(name)
    if len(out) < 2 and task_target is not TaskTarget.REGRESSION:
        raise ValueError(
            f"a {task_target.name} task needs at least two classes (or labels), got {len(out)}: {out!r}"
        )
    if task_target is TaskTarget.BINARY_CLASSIFICATION and set(out) != {0, 1}:
        raise ValueError(
            f"a binary task must have class keys {{0, 1}} (0 = negative, 1 = positive), got keys "
            f"{sorted(out)}; map your labels to 0/1"
        )
    contiguous = (TaskTarget.MULTICLASS_CLASSIFICATION, TaskTarget.MULTILABEL_CLASSIFICATION)
    if task_target in contiguous and sorted(out) != list(range(len(out))):
        raise ValueError(
            f"{task_target.name} class keys must be 0..{len(out) - 1}, got {sorted(out)}; "
            "only ORDINAL_REGRESSION tasks may have gapped keys"
        )
    return FrozenClasses(out)


@dataclass(frozen=True, eq=True)
class TaskDescription:
    """What a task is: its kind, its classes and where it comes from.

    Args:
        task_target: the kind of task (a [`TaskTarget`][TaskTarget] or its name).
        classes: ``{class key: class name}``. Multi-class and multi-label keys are
            ``0..C-1``; binary keys are exactly ``{0, 1}``; ordinal keys are the
            task's ordered levels and may have gaps (``{1: .., 4: .., 6: ..}``);
            REGRESSION tasks may have none (``{}`` or ``None``).
        task_identifier: a name unique among the tasks of an experiment (``None``: none, as
            in torchcross 0.0.6, whose default it was; kept as ``None``).
        domain_identifier: the imaging domain (used for cross-domain source selection);
            ``None`` is kept too.

    Raises:
        TypeError: if a class key is not an int.
        ValueError: if a classification task has fewer than two classes, or binary keys are not
            ``{0, 1}``, or multi-class/multi-label keys are not ``0..C-1``.

    Examples:
        >>> d = TaskDescription(TaskTarget.BINARY_CLASSIFICATION, {0: "healthy", 1: "sick"}, "demo")
        >>> d.num_classes, d.task_target.name
        (2, 'BINARY_CLASSIFICATION')
        >>> {d: "usable as a dict key"}[d]
        'usable as a dict key'
    """

    task_target: TaskTarget
    classes: Mapping[int, str] = field(default_factory=dict)
    task_identifier: str | None = ""
    domain_identifier: str | None = ""

    if TYPE_CHECKING:  # what __post_init__ accepts: a kind's name, and None classes as 0.0.6 did

        def __init__(
            self,
            task_target: TaskTarget | str,
            classes: Mapping[int, str] | None = ...,
            task_identifier: str | None = "",
            domain_identifier: str | None = "",
        ) -> None: ...

    def __post_init__(self) -> None:
        target = TaskTarget.parse(self.task_target)
        object.__setattr__(self, "task_target", target)
        classes = {} if self.classes is None else self.classes  # 0.0.6 defaulted classes to None
        object.__setattr__(self, "classes", _validate_classes(target, classes))
        for name in ("task_identifier", "domain_identifier"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str (or None), got {type(value).__name__}: {value!r}")

    def __hash__(self) -> int:
        return hash((self.task_target, self.classes, self.task_identifier, self.domain_identifier))

    def __getstate__(self) -> dict[str, Any]:
        # The classes go out as a plain dict: torchcross 0.0.6 (which has no FrozenClasses) loads it.
        return {
            "task_target": self.task_target,
            "classes": dict(self.classes),
            "task_identifier": self.task_identifier,
            "domain_identifier": self.domain_identifier,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickles written by torchcross 0.0.6 hold a plain dict; a field they lack reads as
        # 0.0.6's class default, None.
        state = {"task_identifier": None, "domain_identifier": None, **state}
        for key, value in state.items():
            object.__setattr__(self, key, value)
        self.__post_init__()

    @property
    def num_classes(self) -> int:
        """Number of classes (multi-label: number of labels; binary: 2)."""
        return len(self.classes)

    @property
    def class_keys(self) -> tuple[int, ...]:
        """The class keys in ascending order."""
        return tuple(sorted(self.classes))

    def with_classes(self, classes: Mapping[int, str]) -> TaskDescription:
        """Return a copy with other classes (same kind and identifiers)."""
        return TaskDescription(self.task_target, classes, self.task_identifier, self.domain_identifier)

    def to(self, *args: Any, **kwargs: Any) -> TaskDescription:
        """Return ``self``: a description holds no tensors (lets device-transfer code pass it through).

        Examples:
            >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
            >>> d.to("cpu") is d
            True
        """
        return self


_S = TypeVar("_S")


@dataclass(frozen=True)
class Task(Generic[_S]):
    """A few-shot task: a support set to adapt on, a query set to predict.

    After collation ``support`` and ``query`` are ``(inputs, labels)`` tensor pairs
    with labels in the canonical form of the task's kind.

    Examples:
        >>> import torch
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
        >>> t = Task(
        ...     (torch.zeros(2, 3), torch.tensor([0, 1])), (torch.zeros(4, 3), torch.tensor([0, 1, 1, 0])), d
        ... )
        >>> t.support[0].shape, t.description.num_classes
        (torch.Size([2, 3]), 2)
    """

    support: _S
    query: _S
    description: TaskDescription

    def __post_init__(self) -> None:
        if not isinstance(self.description, TaskDescription):
            raise TypeError(
                f"Task.description must be a TaskDescription, got {type(self.description).__name__}"
            )

    def __getstate__(self) -> dict[str, Any]:
        # A tensor view pickles its whole storage: copy views of larger storages (episode
        # labels are views of one tensor, pooled inputs views of a shared block), so a pickle
        # holds only the task's own bytes. The same object is copied once (pickle's memo).
        # Between processes (multiprocessing's ForkingPickler, e.g. out of DataLoader workers)
        # tasks travel as they are: shared storages are handed over, not copied (see below).
        memo: dict[int, Any] = {}
        return {
            "support": _compact(self.support, memo),
            "query": _compact(self.query, memo),
            "description": self.description,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def to(self, *args: Any, **kwargs: Any) -> Task[_S]:
        """A new task with every tensor of ``support`` and ``query`` moved by ``tensor.to(*args, **kwargs)``.

        Tensors are found inside tuples, lists and dicts; other values (indices, names, the
        description) are kept. Floating-point conversions (``task.to(torch.float64)``) apply to
        floating tensors only, so integer labels keep their dtype. Lightning's default batch
        transfer calls this method, so tasks (and lists of them) move to the module's device.

        Examples:
            >>> import torch
            >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
            >>> t = Task((torch.zeros(2, 3), torch.tensor([0, 1])), (torch.zeros(1, 3), torch.tensor([1])), d)
            >>> moved = t.to(torch.float64)
            >>> moved.support[0].dtype, moved.support[1].dtype, moved.description is d
            (torch.float64, torch.int64, True)
        """
        return Task(_move(self.support, args, kwargs), _move(self.query, args, kwargs), self.description)


def _move(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() and _converts_dtype(args, kwargs):
            # a dtype conversion is for inputs: move integer labels but keep their dtype
            device = kwargs.get("device")
            for a in args:
                if isinstance(a, torch.Tensor):
                    device = a.device
                elif not isinstance(a, torch.dtype):
                    device = a
            if device is None:
                return value
            return value.to(device=device, non_blocking=kwargs.get("non_blocking", False))
        return value.to(*args, **kwargs)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_move(v, args, kwargs) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_move(v, args, kwargs) for v in value)
    if isinstance(value, dict):
        return {k: _move(v, args, kwargs) for k, v in value.items()}
    return value


def _compact(value: Any, memo: dict[int, Any]) -> Any:
    """``value`` with every tensor view of a larger storage replaced by a compact copy."""
    key = id(value)
    if key in memo:
        return memo[key]
    out = value
    torch = sys.modules.get("torch")  # a task holding tensors means torch is imported
    if torch is not None and isinstance(value, torch.Tensor):
        if value.layout == torch.strided and (
            value.untyped_storage().nbytes() > value.numel() * value.element_size()
            or not value.is_contiguous()
        ):
            out = value.detach().clone(memory_format=torch.contiguous_format)
            out.requires_grad_(value.requires_grad)
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        out = type(value)(*(_compact(v, memo) for v in value))
    elif type(value) in (tuple, list):
        items = [_compact(v, memo) for v in value]
        out = value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    elif type(value) is dict:
        entries = {k: _compact(v, memo) for k, v in value.items()}
        out = value if all(entries[k] is v for k, v in value.items()) else entries
    memo[key] = out
    return out


def _converts_dtype(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    import torch

    return "dtype" in kwargs or any(isinstance(a, (torch.dtype, torch.Tensor)) for a in args)


def rebuild_task(support: Any, query: Any, description: TaskDescription) -> Task[Any]:
    """``Task(support, query, description)``: how tasks are rebuilt after crossing processes."""
    return Task(support, query, description)


def _reduce_between_processes(task: Task[Any]) -> tuple[Any, ...]:
    return rebuild_task, (task.support, task.query, task.description)


ForkingPickler.register(Task, _reduce_between_processes)

# Pickles name a class by its module. These three keep the torchcross 0.0.6 path
# (a re-export of this module), so episodes pickled by either version load in the other.
for _cls in (TaskTarget, TaskDescription, Task):
    _cls.__module__ = "torchcross.data.task"
del _cls
