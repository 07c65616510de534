"""What depends on the task kind, in one dispatch table keyed by
[`TaskTarget`][TaskTarget].

Each row ([`TaskKind`][TaskKind]) says how wide a task's head is, which loss trains it,
which function turns logits into probabilities, how canonical labels become loss
targets and how logits become predicted labels:

=====================  ===========  ==================  =========  ===================
kind                   head width   loss                probs      prediction
=====================  ===========  ==================  =========  ===================
multi-class            ``C``        cross-entropy       softmax    argmax index
ordinal                ``C``        cross-entropy       softmax    key of the argmax
binary                 ``1``        BCE with logits     sigmoid    ``logit > 0``
multi-label            ``L``        BCE with logits     sigmoid    ``logit > 0``
=====================  ===========  ==================  =========  ===================

Ordinal labels hold the task's class keys (which may have gaps); they become indices through
[`torchcross.tasks.labels.keys_to_indices()`][keys_to_indices], the one place that
mapping is written. ``REGRESSION`` has no row: asking for it raises ``ValueError``.

Everything here is built from differentiable tensor operations without reading
tensor values in Python, so [`loss()`][loss] works twice-differentiated (MAML inner
loops with ``create_graph=True``) and under ``torch.func.grad`` / ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from torchcross.tasks.labels import keys_to_indices
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = [
    "TASK_KINDS",
    "TaskKind",
    "encode_labels",
    "get_task_kind",
    "loss",
    "num_outputs",
    "predictions",
    "probabilities",
]

_REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class TaskKind:
    """One row of the dispatch table: everything the nn layer does differently per task kind.

    The task kind itself has one name, [`TaskTarget`][TaskTarget]; a `TaskKind`
    is the row of rules for one `TaskTarget` (``target``), as
    [`EpisodeKind`][torchcross.sampling.episodes.EpisodeKind] is the row of episode rules.

    Attributes:
        target: the kind this row describes.
        softmax: ``True`` for one-of-``C`` kinds (multi-class, ordinal: cross-entropy
            and softmax); ``False`` for independent-output kinds (binary, multi-label:
            BCE with logits and sigmoid).
        num_outputs: ``description -> head width``.
        encode_labels: ``(canonical labels, description) -> loss targets``: int64
            indices ``(N,)`` for softmax kinds, float 0/1 ``(N, C)`` otherwise.
        loss: ``(logits, targets, class_weights, reduction) -> loss``.
        probabilities: ``logits -> probabilities`` (softmax or sigmoid on the last axis).
        predictions: ``(logits, description) -> predicted labels`` in canonical form.

    Examples:
        >>> kind = get_task_kind("binary_classification")
        >>> kind.softmax, kind.probabilities(torch.zeros(1, 1))
        (False, tensor([[0.5000]]))
    """

    target: TaskTarget
    softmax: bool
    num_outputs: Callable[[TaskDescription], int]
    encode_labels: Callable[[Tensor, TaskDescription], Tensor]
    loss: Callable[[Tensor, Tensor, Tensor | None, str], Tensor]
    probabilities: Callable[[Tensor], Tensor]
    predictions: Callable[[Tensor, TaskDescription], Tensor]


# --- softmax kinds: multi-class and ordinal ---------------------------------------------------


def _encode_indices(labels: Tensor, description: TaskDescription) -> Tensor:
    if labels.dim() == 2 and labels.shape[1] == 1:
        labels = labels.reshape(labels.shape[0])
    if labels.dim() != 1:
        raise ValueError(
            f"{description.task_target.name} labels of task {description.task_identifier!r} must have shape "
            f"(N,) (one class key per example), got {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise TypeError(
            f"{description.task_target.name} labels of task {description.task_identifier!r} must be integer "
            f"class keys, got dtype {labels.dtype}; convert with labels.long()"
        )
    return keys_to_indices(labels, description)


def _cross_entropy(logits: Tensor, targets: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    return F.cross_entropy(logits, targets, weight=weight, reduction=reduction)


def _softmax(logits: Tensor) -> Tensor:
    return torch.softmax(logits, dim=-1)


def _predict_index(logits: Tensor, description: TaskDescription) -> Tensor:
    return logits.argmax(dim=-1)


def _predict_key(logits: Tensor, description: TaskDescription) -> Tensor:
    keys = torch.tensor(description.class_keys, dtype=torch.int64, device=logits.device)
    return keys[logits.argmax(dim=-1)]


# --- sigmoid kinds: binary and multi-label ---------------------------------------------------


def _in_transform(labels: Tensor) -> bool:
    functorch = getattr(torch._C, "_functorch", None)
    return functorch is not None and functorch.is_functorch_wrapped_tensor(labels)


def _check_zero_one(labels: Tensor, description: TaskDescription) -> None:
    """Refuse binary / multi-label values other than 0 and 1 (skipped inside ``torch.func`` transforms,
    as the class-key check of the softmax kinds is: it reads the values)."""
    if labels.numel() == 0 or _in_transform(labels):
        return
    bad = (labels != 0) & (labels != 1)  # NaN is bad too
    if bool(bad.any()):
        values = torch.unique(labels[bad]).tolist()
        kind = "binary" if description.task_target is TaskTarget.BINARY_CLASSIFICATION else "multi-label"
        raise ValueError(
            f"{kind} labels of task {description.task_identifier!r} must be 0/1, got values {values[:10]}; "
            "map them to 0/1 first (e.g. -1/+1 labels with (labels > 0).long(), or the source's labels "
            "with torchcross.tasks.labels.normalize_labels)"
        )


def _encode_binary(labels: Tensor, description: TaskDescription) -> Tensor:
    if labels.dim() == 1:
        labels = labels.reshape(labels.shape[0], 1)
    if labels.dim() != 2 or labels.shape[1] != 1:
        raise ValueError(
            f"binary labels of task {description.task_identifier!r} must have shape (N, 1) (or (N,)) with "
            f"values 0/1, got {tuple(labels.shape)}"
        )
    _check_zero_one(labels, description)
    return labels.to(torch.get_default_dtype() if not labels.is_floating_point() else labels.dtype)


def _encode_multilabel(labels: Tensor, description: TaskDescription) -> Tensor:
    n_labels = description.num_classes
    if labels.dim() != 2 or labels.shape[1] != n_labels:
        raise ValueError(
            f"multi-label labels of task {description.task_identifier!r} must have shape (N, {n_labels}) "
            f"(one 0/1 column per label), got {tuple(labels.shape)}"
        )
    _check_zero_one(labels, description)
    return labels.to(torch.get_default_dtype() if not labels.is_floating_point() else labels.dtype)


def _bce(logits: Tensor, targets: Tensor, pos_weight: Tensor | None, reduction: str) -> Tensor:
    return F.binary_cross_entropy_with_logits(
        logits, targets.to(logits.dtype), pos_weight=pos_weight, reduction=reduction
    )


def _predict_positive(logits: Tensor, description: TaskDescription) -> Tensor:
    return (logits > 0).long()


def _width_classes(description: TaskDescription) -> int:
    return description.num_classes


def _width_one(description: TaskDescription) -> int:
    return 1


TASK_KINDS: Mapping[TaskTarget, TaskKind] = MappingProxyType(
    {
        TaskTarget.MULTICLASS_CLASSIFICATION: TaskKind(
            target=TaskTarget.MULTICLASS_CLASSIFICATION,
            softmax=True,
            num_outputs=_width_classes,
            encode_labels=_encode_indices,
            loss=_cross_entropy,
            probabilities=_softmax,
            predictions=_predict_index,
        ),
        TaskTarget.ORDINAL_REGRESSION: TaskKind(
            target=TaskTarget.ORDINAL_REGRESSION,
            softmax=True,
            num_outputs=_width_classes,
            encode_labels=_encode_indices,  # keys -> indices via keys_to_indices
            loss=_cross_entropy,
            probabilities=_softmax,
            predictions=_predict_key,
        ),
        TaskTarget.BINARY_CLASSIFICATION: TaskKind(
            target=TaskTarget.BINARY_CLASSIFICATION,
            softmax=False,
            num_outputs=_width_one,
            encode_labels=_encode_binary,
            loss=_bce,
            probabilities=torch.sigmoid,
            predictions=_predict_positive,
        ),
        TaskTarget.MULTILABEL_CLASSIFICATION: TaskKind(
            target=TaskTarget.MULTILABEL_CLASSIFICATION,
            softmax=False,
            num_outputs=_width_classes,
            encode_labels=_encode_multilabel,
            loss=_bce,
            probabilities=torch.sigmoid,
            predictions=_predict_positive,
        ),
    }
)
"""The dispatch table: one [`TaskKind`][torchcross.nn.kinds.TaskKind] per supported
[`TaskTarget`][torchcross.tasks.task.TaskTarget]."""


def get_task_kind(target: TaskTarget | str | TaskDescription) -> TaskKind:
    """Return the dispatch-table row for ``target`` (a member, its name, or a description).

    Raises:
        ValueError: an unknown name, or ``REGRESSION`` (no head, loss or metric is defined for it).

    Examples:
        >>> get_task_kind("ORDINAL_REGRESSION").softmax
        True
    """
    if isinstance(target, TaskDescription):
        target = target.task_target
    member = TaskTarget.parse(target)
    try:
        return TASK_KINDS[member]
    except KeyError:
        supported = ", ".join(t.name for t in TASK_KINDS)
        raise ValueError(
            f"task kind {member.name} has no head, loss or metrics in torchcross.nn; supported: {supported}"
        ) from None


def num_outputs(description: TaskDescription) -> int:
    """Width of a task's head: ``C`` for multi-class, ordinal and multi-label; ``1`` for binary.

    Examples:
        >>> num_outputs(TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}))
        1
        >>> num_outputs(TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c"}))
        3
    """
    return get_task_kind(description.task_target).num_outputs(description)


def encode_labels(labels: Tensor, description: TaskDescription) -> Tensor:
    """Turn canonical labels into loss targets.

    Multi-class and ordinal: int64 indices ``(N,)`` (ordinal keys mapped to ``0..C-1``).
    Binary: float ``(N, 1)``. Multi-label: float ``(N, L)``.

    Raises:
        ValueError: a shape that does not fit the kind, or (outside ``torch.func``
            transforms) an ordinal/multi-class label that is not a class key, or a
            binary/multi-label value other than 0 and 1.
        TypeError: float labels for a multi-class or ordinal task.

    Examples:
        >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c"})
        >>> encode_labels(torch.tensor([6, 1]), d)
        tensor([2, 0])
    """
    return get_task_kind(description.task_target).encode_labels(labels, description)


def _check_logits(logits: Tensor, description: TaskDescription, width: int) -> None:
    if logits.dim() != 2 or logits.shape[1] != width:
        raise ValueError(
            f"logits for {description.task_target.name} task {description.task_identifier!r} must have shape "
            f"(N, {width}), got {tuple(logits.shape)}; size the head with num_outputs(description)"
        )


def loss(
    logits: Tensor,
    labels: Tensor,
    description: TaskDescription,
    class_weights: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """The training loss of a task's kind, from logits ``(N, num_outputs)`` and canonical labels.

    Multi-class and ordinal tasks use cross-entropy; ``class_weights`` ``(C,)`` weights
    each class (``F.cross_entropy``'s ``weight``; with ``reduction="mean"`` the result is
    the weighted mean ``sum_i w[y_i] l_i / sum_i w[y_i]``).

    Binary and multi-label tasks use BCE with logits; ``class_weights`` ``(1,)`` or ``(L,)``
    is the weight of the positive examples of each label (``pos_weight``: a value above 1
    counts positives more, e.g. ``n_negative / n_positive`` balances a label). With
    ``reduction="mean"`` the loss is averaged over all ``N * L`` elements, as in
    ``F.binary_cross_entropy_with_logits``; ``"none"`` returns ``(N,)`` for softmax kinds
    and ``(N, 1)`` / ``(N, L)`` for binary / multi-label.

    Labels are checked for shape and values (except inside ``torch.func`` transforms, where
    values cannot be read): ordinal and multi-class labels must be class keys, binary and
    multi-label values 0 or 1, as
    [`encode_labels()`][encode_labels] checks them.

    Raises:
        ValueError: a bad ``reduction``, logits or labels of the wrong shape, a label that
            is not a class key (binary, multi-label: not 0 or 1), or class weights of the wrong size.
        TypeError: float labels for a multi-class or ordinal task.

    Examples:
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
        >>> loss(torch.zeros(2, 3), torch.tensor([0, 2]), d)  # log(3)
        tensor(1.0986)
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    kind = get_task_kind(description.task_target)
    width = kind.num_outputs(description)
    _check_logits(logits, description, width)
    targets = kind.encode_labels(labels, description)
    if targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"got {logits.shape[0]} rows of logits but {targets.shape[0]} labels for task "
            f"{description.task_identifier!r}"
        )
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if class_weights.shape != (width,):
            what = "one weight per class" if kind.softmax else "one positive weight per label"
            raise ValueError(
                f"class_weights for {description.task_target.name} task {description.task_identifier!r} must "
                f"have shape ({width},) ({what}), got {tuple(class_weights.shape)}"
            )
    return kind.loss(logits, targets, class_weights, reduction)


def probabilities(logits: Tensor, description: TaskDescription) -> Tensor:
    """Probabilities from logits: softmax for multi-class/ordinal, sigmoid for binary/multi-label.

    Examples:
        >>> d = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "a", 1: "b"})
        >>> probabilities(torch.zeros(1, 2), d)
        tensor([[0.5000, 0.5000]])
    """
    return get_task_kind(description.task_target).probabilities(logits)


def predictions(logits: Tensor, description: TaskDescription) -> Tensor:
    """Predicted labels in canonical form: indices ``(N,)`` for multi-class, class keys
    ``(N,)`` for ordinal, 0/1 ``(N, 1)`` for binary and ``(N, L)`` for multi-label
    (positive where the probability exceeds 0.5, i.e. the logit exceeds 0).

    Examples:
        >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c"})
        >>> predictions(torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]), d)
        tensor([4, 1])
    """
    return get_task_kind(description.task_target).predictions(logits, description)
