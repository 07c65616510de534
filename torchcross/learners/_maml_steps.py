"""Two exact shortcuts of MAML's inner loop under a zero-initialised head.

Under a zero head the backbone's gradient is exactly zero, so the first inner step
only moves the head (the backbone is unchanged, bit for bit), and the second step can
reuse the backbone's support features from the first instead of a new forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from torchcross.learners.inner_optimizers import InnerOptimizer
from torchcross.nn import get_task_kind, head_forward
from torchcross.tasks.task import TaskDescription

__all__ = ["FeatureCache", "step_on_cached_features"]

ParamDict = dict[str, Tensor]


class FeatureCache:
    """``params -> features``, reusing the last result while the backbone tensors are the same objects."""

    def __init__(self, fn: Callable[[ParamDict], Tensor], names: Sequence[str], enabled: bool) -> None:
        self.fn, self.names, self.enabled = fn, list(names), enabled
        self.key: list[Tensor] | None = None
        self.value: Tensor | None = None

    def __call__(self, params: ParamDict) -> Tensor:
        tensors = [params[n] for n in self.names]
        if self.enabled and self.key is not None and all(a is b for a, b in zip(self.key, tensors)):
            return self.value  # type: ignore[return-value]
        value = self.fn(params)
        if self.enabled:
            self.key, self.value = tensors, value
        return value


def step_on_cached_features(
    features: Tensor,
    params: ParamDict,
    backbone_names: list[str],
    targets: Tensor,
    desc: TaskDescription,
    optimizer: InnerOptimizer,
    state: Any,
    *,
    first_order: bool,
) -> tuple[ParamDict, Any]:
    """The second inner step after a head-only first step, without a new backbone forward pass.

    The backbone has not moved, so its support features are those of the first step. The
    gradient of the loss with respect to the features is taken at a fresh alias of them (a
    partial derivative: the head also depends on the features, through the first step),
    then pulled back through the backbone (a vector-Jacobian product).
    """
    create_graph = not first_order
    with torch.enable_grad():
        alias = features.view_as(features)
        head = {"weight": params["head.weight"], "bias": params["head.bias"]}
        task_loss = get_task_kind(desc).loss(head_forward(alias, head), targets, None, "mean")
        g_features, g_weight, g_bias = torch.autograd.grad(
            task_loss, [alias, head["weight"], head["bias"]], create_graph=create_graph
        )
        backbone = [params[k] for k in backbone_names]
        pulled = torch.autograd.grad(
            features, backbone, grad_outputs=g_features, create_graph=create_graph, allow_unused=True
        )
    grads = {k: torch.zeros_like(p) if g is None else g for k, p, g in zip(backbone_names, backbone, pulled)}
    grads.update({"head.weight": g_weight, "head.bias": g_bias})
    return optimizer.update(params, grads, state)  # type: ignore[return-value]
