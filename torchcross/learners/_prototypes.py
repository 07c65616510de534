"""Prototypes and prototype logits for all four task kinds (ProtoNets).

* multi-class and ordinal: one prototype per class, the mean feature of its support
  examples; the logit of class ``c`` is ``-scale * d(x, p_c)``;
* binary and multi-label: a negative and a positive prototype per label; the logit
  of label ``l`` is ``scale * (d(x, n_l) - d(x, p_l))``, so the sigmoid of the logit
  is high when ``x`` is closer to the positives.

``d`` is the squared euclidean distance (``"euclidean"``, as in Snell et al.) or the
cosine distance ``1 - cos(x, p)`` (``"cosine"``). The logits feed the kind's loss and
probability function (`torchcross.nn`) unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchcross.nn import encode_labels, get_task_kind
from torchcross.tasks.task import TaskDescription

__all__ = ["DISTANCES", "prototype_logits", "prototypes"]

DISTANCES = ("euclidean", "cosine")
"""The distances [`prototype_logits()`][torchcross.learners.functional.prototype_logits] accepts."""


def _in_transform(x: Tensor) -> bool:
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


def _check_counts(counts: Tensor, description: TaskDescription, what: str) -> None:
    if _in_transform(counts):
        return
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        keys = description.class_keys
        raise ValueError(
            f"task {description.task_identifier!r} has no support examples for the {what} of "
            f"class/label keys {[keys[i] for i in empty]}; every prototype needs at least one example"
        )


def prototypes(features: Tensor, labels: Tensor, description: TaskDescription) -> Tensor:
    """Prototypes from support features ``(N, F)`` and canonical labels.

    Returns:
        ``(C, F)`` class means for multi-class and ordinal tasks (classes in key order);
        ``(L, 2, F)`` for binary (``L = 1``) and multi-label tasks: per label the mean of
        its negative (index 0) and positive (index 1) examples.

    Raises:
        ValueError: a class (or a label's positives or negatives) without support examples.

    Examples:
        >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b"})
        >>> prototypes(torch.tensor([[0.0], [2.0], [10.0]]), torch.tensor([1, 1, 4]), d)
        tensor([[ 1.], [10.]])
    """
    kind = get_task_kind(description)
    targets = encode_labels(labels, description)
    if kind.softmax:
        onehot = torch.nn.functional.one_hot(targets, description.num_classes).to(features.dtype)
        counts = onehot.sum(0)
        _check_counts(counts, description, "class")
        return (onehot.T @ features) / counts[:, None]
    pos = targets.to(features.dtype)  # (N, L)
    neg = 1 - pos
    pos_counts, neg_counts = pos.sum(0), neg.sum(0)
    _check_counts(pos_counts, description, "positive prototype")
    _check_counts(neg_counts, description, "negative prototype")
    pos_mean = (pos.T @ features) / pos_counts[:, None]
    neg_mean = (neg.T @ features) / neg_counts[:, None]
    return torch.stack([neg_mean, pos_mean], dim=1)


def _distance(features: Tensor, protos: Tensor, distance: str) -> Tensor:
    # features (N, F), protos (..., F) -> (N, ...)
    flat = protos.reshape(-1, protos.shape[-1])
    if distance == "euclidean":
        d = (features[:, None, :] - flat[None, :, :]).pow(2).sum(-1)
    else:
        x = torch.nn.functional.normalize(features, dim=-1)
        p = torch.nn.functional.normalize(flat, dim=-1)
        d = 1 - x @ p.T
    return d.reshape(features.shape[0], *protos.shape[:-1])


def prototype_logits(
    features: Tensor,
    protos: Tensor,
    description: TaskDescription,
    distance: str = "euclidean",
    scale: float | Tensor = 1.0,
) -> Tensor:
    """Logits ``(N, num_outputs)`` of query features ``(N, F)`` from
    [`prototypes()`][torchcross.learners.functional.prototypes].

    Examples:
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> protos = prototypes(torch.tensor([[0.0], [4.0]]), torch.tensor([[0], [1]]), d)
        >>> prototype_logits(torch.tensor([[3.0]]), protos, d)  # d(x, neg) - d(x, pos) = 9 - 1
        tensor([[8.]])
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    kind = get_task_kind(description)
    d = _distance(features, protos, distance)
    if kind.softmax:
        return -scale * d
    return scale * (d[..., 0] - d[..., 1])
