"""Per-task metrics: AUROC, accuracy and loss for every task kind, through torchmetrics.

=============  ==============================================  ===============================
kind           AUROC                                           accuracy
=============  ==============================================  ===============================
multi-class    macro one-vs-rest on softmax probabilities      fraction of argmax == label
ordinal        as multi-class, on the class indices            fraction of argmax == label
binary         ROC AUC of the positive-class score             fraction of (p > 0.5) == label
multi-label    macro over labels of each label's ROC AUC       fraction of correct (example,
                                                               label) entries at p > 0.5
=============  ==============================================  ===============================

**Ordinal tasks** also get two order-aware metrics (``ORDINAL_METRIC_NAMES``), on the
class indices ``0..K-1`` of the task's ordered classes (its class keys in increasing order):

* ``mae``: mean absolute error of the *expected level* ``sum_k p_k * k`` (``p`` the
  softmax probabilities) against the true index (``ordinal_mae``);
* ``qwk``: quadratic weighted kappa (Cohen's kappa with weights ``(i - j)^2``) between the
  argmax prediction and the true index, over all ``K`` classes (``quadratic_weighted_kappa``);
  NaN when chance agreement leaves nothing to improve on (e.g. one class in labels and predictions).

Other kinds have no such keys; both are NaN when a score is not finite. They match
scikit-learn's ``mean_absolute_error`` and ``cohen_kappa_score(weights="quadratic",
labels=range(K))``.

These match scikit-learn's ``roc_auc_score(..., multi_class="ovr", average="macro")``
and ``accuracy_score`` (multi-label: ``accuracy_score`` on the flattened matrices, not
exact match). Accuracy is torchmetrics' ``average="micro"``. torchmetrics computes in
float32, so values agree with scikit-learn's to about ``1e-7``.

**Undefined AUROC.** A class (or label) with no positive or no negative example in
``labels`` has no ROC curve. By default (``undefined="ignore"``) the macro average runs
over the classes where AUROC is defined; with ``undefined="nan"`` any such class makes
the result NaN. When no class is defined (e.g. a binary query set of one class) the
result is NaN either way. No warning is emitted.

**Non-finite scores.** If any score is NaN or infinite (e.g. a diverged model), no
metric is defined: [`auroc()`][auroc],
[`accuracy()`][accuracy] and
[`compute_metrics()`][compute_metrics] return
NaN, never a value that looks like a result.

torchmetrics is imported on first use, so ``import torchcross.evaluation.metrics`` stays cheap.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from torchcross.nn.kinds import encode_labels, get_task_kind
from torchcross.nn.kinds import loss as _kind_loss
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = [
    "METRIC_NAMES",
    "ORDINAL_METRIC_NAMES",
    "accuracy",
    "auroc",
    "compute_metrics",
    "ordinal_mae",
    "quadratic_weighted_kappa",
]

METRIC_NAMES: tuple[str, ...] = ("auroc", "accuracy", "loss")
"""The keys of ``compute_metrics``' result for every task kind."""

ORDINAL_METRIC_NAMES: tuple[str, ...] = ("mae", "qwk")
"""The extra keys of ``compute_metrics``' result for ordinal tasks."""

_UNDEFINED = ("ignore", "nan")


def _classification() -> Any:
    from torchmetrics.functional import classification

    return classification


def _check_inputs(scores: Tensor, labels: Tensor, description: TaskDescription) -> tuple[Tensor, Tensor]:
    """Validate shapes/values; return (scores (N, out) detached, targets from encode_labels)."""
    kind = get_task_kind(description.task_target)
    width = kind.num_outputs(description)
    scores = torch.as_tensor(scores).detach()
    labels = torch.as_tensor(labels).detach()
    if scores.dim() != 2 or scores.shape[1] != width:
        raise ValueError(
            f"scores for {description.task_target.name} task {description.task_identifier!r} must have shape "
            f"(N, {width}), got {tuple(scores.shape)}"
        )
    if not scores.is_floating_point():
        raise TypeError(f"scores must be a floating-point tensor, got dtype {scores.dtype}")
    targets = encode_labels(labels, description).detach()
    if targets.shape[0] != scores.shape[0]:
        raise ValueError(
            f"got {scores.shape[0]} rows of scores but {targets.shape[0]} labels for task "
            f"{description.task_identifier!r}"
        )
    if scores.shape[0] == 0:
        raise ValueError(f"no examples to score for task {description.task_identifier!r} (N = 0)")
    if not kind.softmax and not bool(((targets == 0) | (targets == 1)).all()):
        raise ValueError(
            f"{description.task_target.name} labels of task {description.task_identifier!r} must be 0/1, "
            f"got values {torch.unique(targets).tolist()[:10]}"
        )
    return scores, targets


def auroc(
    logits_or_scores: Tensor,
    labels: Tensor,
    description: TaskDescription,
    *,
    from_logits: bool = True,
    undefined: str = "ignore",
) -> float:
    """Area under the ROC curve for one task, macro-averaged over classes or labels.

    Args:
        logits_or_scores: ``(N, num_outputs(description))`` logits, or probabilities with
            ``from_logits=False`` (for multi-class/ordinal tasks rows that sum to 1:
            one-vs-rest AUROC ranks each class's probability, which is not the ranking of
            its logit).
        labels: canonical labels (ordinal: class keys).
        description: the task.
        from_logits: whether the first argument holds logits (converted with the
            kind's probability function) or probabilities.
        undefined: ``"ignore"`` averages over the classes whose AUROC is defined;
            ``"nan"`` returns NaN if any class lacks positives or negatives (see module doc).

    Raises:
        ValueError: shapes that do not fit the task, labels outside the classes,
            probabilities outside ``[0, 1]``, no examples, or a bad ``undefined``.

    Examples:
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> auroc(torch.tensor([[-1.0], [2.0], [0.5], [-3.0]]), torch.tensor([[0], [1], [0], [1]]), d)
        0.5
    """
    if undefined not in _UNDEFINED:
        raise ValueError(f"undefined must be one of {_UNDEFINED}, got {undefined!r}")
    kind = get_task_kind(description.task_target)
    scores, targets = _check_inputs(logits_or_scores, labels, description)
    if not bool(torch.isfinite(scores).all()):
        return math.nan
    if from_logits:
        scores = kind.probabilities(scores)
    elif bool(((scores < 0) | (scores > 1)).any()):
        raise ValueError(
            "with from_logits=False the scores must be probabilities in [0, 1]; pass logits with "
            "from_logits=True instead"
        )
    n_classes = scores.shape[1]
    if kind.softmax:
        one_hot = torch.nn.functional.one_hot(targets, n_classes)
    else:
        one_hot = targets.long()
    positives = one_hot.sum(dim=0)
    defined = (positives > 0) & (positives < one_hot.shape[0])
    n_defined = int(defined.sum())
    if n_defined == 0 or (undefined == "nan" and n_defined < n_classes):
        return math.nan
    tm = _classification()
    if n_defined == 1:  # binary tasks, or a single class/label with a ROC curve
        column = int(defined.nonzero()[0, 0])
        value = tm.binary_auroc(scores[:, column], one_hot[:, column])
    elif kind.softmax and n_defined == n_classes:
        value = tm.multiclass_auroc(scores, targets, num_classes=n_classes, average="macro")
    else:
        # one-vs-rest over the classes (labels) where the ROC curve exists
        value = tm.multilabel_auroc(
            scores[:, defined], one_hot[:, defined], num_labels=n_defined, average="macro"
        )
    return float(value)


def accuracy(
    logits: Tensor, labels: Tensor, description: TaskDescription, *, from_logits: bool = True
) -> float:
    """Fraction of correct predictions (torchmetrics' ``average="micro"``).

    Multi-class and ordinal: argmax equals the label. Binary: probability above 0.5
    (logit above 0) equals the label. Multi-label: the fraction of correct
    ``(example, label)`` entries, each thresholded at 0.5 (not exact-match accuracy).

    Args:
        logits: ``(N, num_outputs(description))`` logits, or probabilities with
            ``from_logits=False``.
        labels: canonical labels (ordinal: class keys).
        description: the task.
        from_logits: whether ``logits`` are logits (threshold 0) or probabilities (0.5).

    Examples:
        >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c"})
        >>> accuracy(torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]), torch.tensor([4, 6]), d)
        0.5
    """
    kind = get_task_kind(description.task_target)
    scores, targets = _check_inputs(logits, labels, description)
    if not bool(torch.isfinite(scores).all()):
        return math.nan
    tm = _classification()
    if kind.softmax:
        preds = scores.argmax(dim=-1)
        value = tm.multiclass_accuracy(preds, targets, num_classes=scores.shape[1], average="micro")
    else:
        preds = (scores > (0.0 if from_logits else 0.5)).long()
        targets = targets.long()
        if description.task_target is TaskTarget.BINARY_CLASSIFICATION:
            value = tm.binary_accuracy(preds[:, 0], targets[:, 0])
        else:
            value = tm.multilabel_accuracy(preds, targets, num_labels=scores.shape[1], average="micro")
    return float(value)


def _ordinal_inputs(scores: Tensor, labels: Tensor, description: TaskDescription) -> tuple[Tensor, Tensor]:
    if description.task_target is not TaskTarget.ORDINAL_REGRESSION:
        raise ValueError(
            f"ordinal metrics need an ORDINAL_REGRESSION task; task {description.task_identifier!r} is "
            f"{description.task_target.name} (use auroc/accuracy)"
        )
    return _check_inputs(scores, labels, description)


def ordinal_mae(
    logits: Tensor, labels: Tensor, description: TaskDescription, *, from_logits: bool = True
) -> float:
    """Mean absolute error of the expected level of an ordinal task.

    The expected level of an example is ``sum_k p_k * k`` over the class indices
    ``k = 0..K-1`` (the task's class keys in increasing order), with ``p`` the softmax of
    the logits; the error is its distance to the true index. Computed in float64.

    Args:
        logits: ``(N, K)`` logits, or probabilities (rows summing to 1) with ``from_logits=False``.
        labels: class keys.
        description: an ``ORDINAL_REGRESSION`` task.
        from_logits: whether the first argument holds logits or probabilities.

    Returns:
        the MAE in index units (NaN if a score is not finite).

    Raises:
        ValueError: for another task kind, shapes that do not fit, or labels outside the keys.

    Examples:
        >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c"})
        >>> ordinal_mae(
        ...     torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]), torch.tensor([1, 4]), d, from_logits=False
        ... )
        0.75
    """
    scores, targets = _ordinal_inputs(logits, labels, description)
    if not bool(torch.isfinite(scores).all()):
        return math.nan
    probs = scores.double()
    if from_logits:
        probs = torch.softmax(probs, dim=-1)
    elif bool(((probs < 0) | (probs > 1)).any()):
        raise ValueError(
            "with from_logits=False the scores must be probabilities in [0, 1]; pass logits with "
            "from_logits=True instead"
        )
    levels = torch.arange(probs.shape[1], dtype=torch.float64, device=probs.device)
    expected = probs @ levels
    return float((expected - targets.double()).abs().mean())


def quadratic_weighted_kappa(logits: Tensor, labels: Tensor, description: TaskDescription) -> float:
    """Quadratic weighted kappa between the argmax prediction and the true level of an ordinal task.

    ``1 - sum(W * O) / sum(W * E)`` with ``O`` the ``K x K`` confusion matrix over the class
    indices ``0..K-1`` (all ``K`` classes, present or not), ``E`` the outer product of its
    row and column sums divided by ``N`` (chance agreement) and ``W[i, j] = (i - j)^2``.
    1 is perfect agreement, 0 chance level, negative worse than chance.

    Args:
        logits: ``(N, K)`` logits or probabilities (only their argmax is used).
        labels: class keys.
        description: an ``ORDINAL_REGRESSION`` task.

    Returns:
        the kappa; NaN if ``sum(W * E)`` is 0 (e.g. labels and predictions all of one
        class) or a score is not finite.

    Raises:
        ValueError: for another task kind, shapes that do not fit, or labels outside the keys.

    Examples:
        >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c"})
        >>> logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 3.0]])
        >>> round(quadratic_weighted_kappa(logits, torch.tensor([1, 4, 4, 6]), d), 4)
        0.8
    """
    scores, targets = _ordinal_inputs(logits, labels, description)
    if not bool(torch.isfinite(scores).all()):
        return math.nan
    k = scores.shape[1]
    preds = scores.argmax(dim=-1).cpu()
    observed = torch.bincount(targets.cpu() * k + preds, minlength=k * k).reshape(k, k).double()
    n = observed.sum()
    chance = torch.outer(observed.sum(dim=1), observed.sum(dim=0)) / n
    index = torch.arange(k, dtype=torch.float64)
    weights = (index[:, None] - index[None, :]) ** 2
    denominator = float((weights * chance).sum())
    if denominator == 0.0:
        return math.nan
    return 1.0 - float((weights * observed).sum()) / denominator


def compute_metrics(
    logits: Tensor,
    labels: Tensor,
    description: TaskDescription,
    *,
    class_weights: Tensor | None = None,
    undefined: str = "ignore",
) -> dict[str, float]:
    """AUROC, accuracy and mean loss of one task's query predictions (ordinal tasks: also MAE and QWK).

    Args:
        logits: ``(N, num_outputs(description))``.
        labels: canonical labels.
        description: the task.
        class_weights: passed to [`torchcross.nn.kinds.loss()`][torchcross.nn.kinds.loss].
        undefined: passed to [`auroc()`][auroc].

    Returns:
        ``{"auroc": ..., "accuracy": ..., "loss": ...}`` as Python floats (AUROC may be
        NaN; all are NaN if any logit is NaN or infinite); for ordinal tasks also ``"mae"``
        (``ordinal_mae``) and ``"qwk"`` (``quadratic_weighted_kappa``).

    Examples:
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
        >>> m = compute_metrics(torch.eye(3) * 5, torch.tensor([0, 1, 2]), d)
        >>> m["auroc"], m["accuracy"], round(m["loss"], 4)
        (1.0, 1.0, 0.0134)
    """
    with torch.no_grad():
        value = _kind_loss(
            torch.as_tensor(logits).detach(), torch.as_tensor(labels), description, class_weights
        )
    if not bool(torch.isfinite(torch.as_tensor(logits)).all()):
        _check_inputs(logits, labels, description)
        names = ("auroc", "accuracy", "loss", *_ordinal_metrics_names(description))
        return dict.fromkeys(names, math.nan)
    out = {
        "auroc": auroc(logits, labels, description, undefined=undefined),
        "accuracy": accuracy(logits, labels, description),
        "loss": float(value),
    }
    out.update(_ordinal_metrics(logits, labels, description))
    return out


def _ordinal_metrics_names(description: TaskDescription) -> tuple[str, ...]:
    return ("mae", "qwk") if description.task_target is TaskTarget.ORDINAL_REGRESSION else ()


def _ordinal_metrics(logits: Tensor, labels: Tensor, description: TaskDescription) -> dict[str, float]:
    """``{"mae": ..., "qwk": ...}`` for ordinal tasks, ``{}`` for the other kinds."""
    if description.task_target is not TaskTarget.ORDINAL_REGRESSION:
        return {}
    return {
        "mae": ordinal_mae(logits, labels, description),
        "qwk": quadratic_weighted_kappa(logits, labels, description),
    }
