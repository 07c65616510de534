"""Shared helpers for the learner tests: tiny tasks of every kind and independent references."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from torchcross.learners.backbones import conv4, mlp
from torchcross.tasks.task import Task, TaskDescription

MULTICLASS = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mc")
BINARY = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "bin")
MULTILABEL = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z"}, "ml")
ORDINAL = TaskDescription("ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "severe", 9: "worst"}, "ord")
KINDS = {"multiclass": MULTICLASS, "binary": BINARY, "multilabel": MULTILABEL, "ordinal": ORDINAL}


def labels_for(desc: TaskDescription, n: int, g: torch.Generator) -> Tensor:
    """Canonical labels with every class (or every label's positives and negatives) present."""
    target = desc.task_target.name
    if target == "MULTILABEL_CLASSIFICATION":
        y = torch.randint(0, 2, (n, desc.num_classes), generator=g)
        y[0], y[1] = 1, 0
        return y
    if target == "BINARY_CLASSIFICATION":
        return (torch.arange(n) % 2).reshape(n, 1)
    keys = torch.tensor(desc.class_keys)
    return keys[torch.arange(n) % len(keys)]


def make_task(
    desc: TaskDescription,
    input_shape: tuple[int, ...],
    n_support: int,
    n_query: int,
    seed: int,
    dtype: torch.dtype = torch.float64,
) -> Task:
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n_support, *input_shape, generator=g, dtype=dtype)
    xq = torch.randn(n_query, *input_shape, generator=g, dtype=dtype)
    return Task((xs, labels_for(desc, n_support, g)), (xq, labels_for(desc, n_query, g)), desc)


def tiny_backbone(
    kind: str, batch_norm: bool, dtype: torch.dtype = torch.float64, seed: int = 0
) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    if kind == "mlp":
        net, shape = mlp(5, (4,), batch_norm=batch_norm), (5,)
    else:
        net, shape = conv4(1, hidden=3, batch_norm=batch_norm, image_size=16), (1, 16, 16)
    return net.to(dtype), shape


def mixed_tasks(shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float64) -> list[Task]:
    return [make_task(d, shape, 8, 6, seed + i, dtype) for i, d in enumerate(KINDS.values())]


def reference_loss(logits: Tensor, labels: Tensor, desc: TaskDescription) -> Tensor:
    """Loss of each kind written directly with torch (independent of torchcross.nn)."""
    target = desc.task_target.name
    if target == "MULTICLASS_CLASSIFICATION":
        return F.cross_entropy(logits, labels)
    if target == "ORDINAL_REGRESSION":
        index = {k: i for i, k in enumerate(sorted(desc.classes))}
        return F.cross_entropy(logits, torch.tensor([index[int(k)] for k in labels]))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def num_out(desc: TaskDescription) -> int:
    return 1 if desc.task_target.name == "BINARY_CLASSIFICATION" else desc.num_classes


def reference_maml_grads(
    backbone: nn.Module,
    num_features: int,
    tasks: list[Task],
    lr: float,
    steps: int,
    first_order: bool = False,
    anil: bool = False,
) -> dict[str, Tensor]:
    """Meta-gradient of the mean query loss, hand-unrolled with torch.autograd (zero heads, batch-stat BN)."""
    params = dict(backbone.named_parameters())
    backbone.train()
    losses = []
    for task in tasks:
        buffers = {k: b.clone() for k, b in backbone.named_buffers()}
        (xs, ys), (xq, yq), desc = task.support, task.query, task.description
        dtype = next(iter(params.values())).dtype
        fast = dict(params)
        w = torch.zeros(num_out(desc), num_features, dtype=dtype, requires_grad=True)
        b = torch.zeros(num_out(desc), dtype=dtype, requires_grad=True)
        for _ in range(steps):
            feats = functional_call(backbone, (fast, buffers), (xs,))
            loss = reference_loss(feats @ w.T + b, ys, desc)
            names = [] if anil else list(fast)
            grads = torch.autograd.grad(loss, [fast[n] for n in names] + [w, b], create_graph=not first_order)
            fast = {**fast, **{n: fast[n] - lr * g for n, g in zip(names, grads)}}
            w, b = w - lr * grads[-2], b - lr * grads[-1]
        feats = functional_call(backbone, (fast, buffers), (xq,))
        losses.append(reference_loss(feats @ w.T + b, yq, desc))
    meta = torch.stack(losses).mean()
    grads = torch.autograd.grad(meta, list(params.values()))
    return dict(zip(params, grads))


def assert_grads_close(actual: dict[str, Tensor], expected: dict[str, Tensor], rtol: float = 1e-8) -> None:
    assert set(actual) == set(expected)
    scale = max(float(g.abs().max()) for g in expected.values())
    assert scale > 0
    for k in expected:
        torch.testing.assert_close(
            actual[k], expected[k], rtol=rtol, atol=rtol * scale, msg=lambda m, k=k: f"{k}: {m}"
        )


def backbone_grads(model: nn.Module, prefix: str = "backbone.") -> dict[str, Tensor]:
    return {k[len(prefix) :]: p.grad.clone() for k, p in model.named_parameters() if k.startswith(prefix)}


def fixed_width_tasks(
    shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float64
) -> list[Task]:
    """Tasks that all have 3 outputs (3-way multi-class, 3-label multi-label): one learned head fits all."""
    return [make_task(d, shape, 9, 6, seed + i, dtype) for i, d in enumerate([MULTICLASS, MULTILABEL] * 2)]


def logits_backbone(kind: str, batch_norm: bool, width: int = 3) -> tuple[nn.Module, tuple[int, ...]]:
    """A tiny backbone that ends in a linear layer of ``width`` outputs: its output is the logits."""
    body, shape = tiny_backbone(kind, batch_norm)
    torch.manual_seed(1)
    net = nn.Sequential(body, nn.Linear(body.num_features, width).double())
    net.num_features = width
    return net, shape


def reference_learned_head_grads(
    backbone: nn.Module,
    head: nn.Linear | None,
    tasks: list[Task],
    lr: float,
    steps: int,
    first_order: bool = False,
    anil: bool = False,
) -> dict[str, Tensor]:
    """Classic MAML's meta-gradient, hand-unrolled: the head's weights are meta-parameters too.

    ``head=None``: the backbone's output is the logits. Keys ``"backbone.<name>"`` and
    ``"head.weight"`` / ``"head.bias"``; batch-statistics BatchNorm on copies of the buffers.
    """
    meta = {"backbone." + k: p for k, p in backbone.named_parameters()}
    if head is not None:
        meta.update({"head.weight": head.weight, "head.bias": head.bias})
    backbone.train()
    losses = []
    for task in tasks:
        buffers = {k: b.clone() for k, b in backbone.named_buffers()}
        (xs, ys), (xq, yq), desc = task.support, task.query, task.description

        def logits(p: dict[str, Tensor], x: Tensor, buffers: dict[str, Tensor] = buffers) -> Tensor:
            net = {k[len("backbone.") :]: v for k, v in p.items() if k.startswith("backbone.")}
            out = functional_call(backbone, (net, buffers), (x,))
            return out if head is None else out @ p["head.weight"].T + p["head.bias"]

        fast = dict(meta)
        names = [k for k in fast if k.startswith("head.") or not anil]
        for _ in range(steps):
            grads = torch.autograd.grad(
                reference_loss(logits(fast, xs), ys, desc),
                [fast[n] for n in names],
                create_graph=not first_order,
            )
            fast = {**fast, **{n: fast[n] - lr * g for n, g in zip(names, grads)}}
        losses.append(reference_loss(logits(fast, xq), yq, desc))
    grads = torch.autograd.grad(torch.stack(losses).mean(), list(meta.values()))
    return dict(zip(meta, grads))
