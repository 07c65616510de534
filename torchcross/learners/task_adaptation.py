"""Adapting a backbone and a linear head on a task's support set: MAML's inner loop.

[`adapt_backbone_and_head()`][adapt_backbone_and_head] runs the inner loop
of one task over parameters named
``"backbone.*"`` (read by a ``features`` function) and ``"head.weight"`` /
``"head.bias"`` (a linear head sized for the task), with the loss of the task's kind.

Under a zero-initialised head (``zero_head=True``) two exact shortcuts apply. The
backbone's gradient is then exactly zero, so the first step only moves the head (the
backbone is unchanged, bit for bit), and the second step reuses the backbone's support
features of the first instead of a new forward pass
([`step_on_cached_features()`][step_on_cached_features]).
Both need an optimiser that skips zero gradients on its first step
([`skips_zero_gradients()`][skips_zero_gradients]: ``sgd(lr)`` or ``adam(lr)``
without weight decay); with any other optimiser every step runs in full.

Examples:
    >>> import torch
    >>> from torchcross.learners.transforms import sgd
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
    >>> params = {"backbone.w": torch.eye(2), "head.weight": torch.zeros(1, 2), "head.bias": torch.zeros(1)}
    >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1], [0]])
    >>> def features(p, x):
    ...     return x @ p["backbone.w"]
    >>> opt = sgd(1.0)
    >>> adapted = adapt_backbone_and_head(
    ...     features, params, (x, y), d, opt, 2, backbone=["backbone.w"], zero_head=True, differentiable=False
    ... )
    >>> adapted["head.weight"], adapted["head.bias"]
    (tensor([[ 0.4689, -0.4689]]), tensor([0.]))
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, cast

import torch
from torch import Tensor

from torchcross.learners.divergence import nan_if_diverged
from torchcross.learners.inner_loop import inner_loop, transform_step
from torchcross.learners.inner_optimizers import InnerOptimizer, as_transformation
from torchcross.learners.transforms import GradientTransformation, skips_zero_gradients
from torchcross.nn import get_task_kind, head_forward, loss, num_outputs
from torchcross.tasks.task import TaskDescription

__all__ = [
    "HEAD_NAMES",
    "FeatureCache",
    "adapt_backbone_and_head",
    "adapted_logits",
    "check_logits",
    "maml_task_loss",
    "step_on_cached_features",
]

ParamDict = dict[str, Tensor]
HEAD_NAMES = ("head.weight", "head.bias")
"""The names of a task head's parameters in a learner's flat parameter dict."""


def _head(params: ParamDict) -> ParamDict:
    return {"weight": params["head.weight"], "bias": params["head.bias"]}


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
    optimizer: GradientTransformation,
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
        head = _head(params)
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
    return transform_step(optimizer, params, grads, state)


def _features_with_vjp(
    features: Callable[[ParamDict, Tensor], Tensor], params: ParamDict, x: Tensor, names: list[str]
) -> tuple[Tensor, Callable[..., Any]]:
    """``features(params, x)`` and its vector-Jacobian product with respect to ``params[names]``
    (``torch.func.vjp``: the functorch counterpart of keeping the graph for `torch.autograd.grad`)."""

    def of_backbone(sub: ParamDict) -> Tensor:
        return features({**params, **sub}, x)

    value, pull = cast(
        "tuple[Tensor, Callable[..., Any]]", torch.func.vjp(of_backbone, {n: params[n] for n in names})
    )
    return value, pull


def _func_step_on_cached_features(
    features: Tensor,
    pull: Callable[..., Any],
    params: ParamDict,
    targets: Tensor,
    desc: TaskDescription,
    optimizer: GradientTransformation,
    state: Any,
    first_order: bool,
) -> tuple[ParamDict, Any]:
    """`step_on_cached_features()` inside ``torch.func`` transforms (``vmap``): the partial derivative
    with respect to the features by ``torch.func.grad``, pulled back through the backbone by ``pull``."""
    kind = get_task_kind(desc)

    def head_loss(f: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return kind.loss(head_forward(f, {"weight": weight, "bias": bias}), targets, None, "mean")

    g_features, g_weight, g_bias = torch.func.grad(head_loss, argnums=(0, 1, 2))(
        features, params["head.weight"], params["head.bias"]
    )
    grads: ParamDict = {**pull(g_features)[0], "head.weight": g_weight, "head.bias": g_bias}
    if first_order:
        grads = {k: g.detach() for k, g in grads.items()}
    return transform_step(optimizer, params, grads, state)


def check_logits(logits: Tensor, description: TaskDescription) -> Tensor:
    """``logits`` if they are ``(N, num_outputs(description))``; a ``ValueError`` naming both otherwise.

    For backbones that output the logits themselves (no head).
    """
    width = num_outputs(description)
    if logits.dim() != 2 or logits.shape[1] != width:
        raise ValueError(
            f"the backbone (no head) returns outputs of shape {tuple(logits.shape)}, but task "
            f"{description.task_identifier!r} needs logits of shape (N, {width}) (num_outputs of its "
            "description); give the backbone that many outputs"
        )
    return logits


def adapt_backbone_and_head(
    features: Callable[[ParamDict, Tensor], Tensor],
    params: ParamDict,
    support: tuple[Tensor, Tensor],
    description: TaskDescription,
    optimizer: GradientTransformation | InnerOptimizer,
    num_steps: int,
    *,
    backbone: Collection[str],
    adapt_backbone: Collection[str] | None = None,
    zero_head: bool = False,
    head: bool = True,
    first_order: bool = False,
    checkpoint: bool = False,
    differentiable: bool = True,
    use_func: bool = False,
) -> ParamDict:
    """Adapt backbone and head on ``support`` with ``num_steps`` inner steps; return all parameters.

    Args:
        features: ``(params, x) -> (N, F)``, reading only the ``backbone`` entries of ``params``.
        params: the backbone parameters and ``"head.weight"`` / ``"head.bias"``; never modified.
        support: ``(inputs, canonical labels)`` of the task.
        description: the task (its kind gives the loss).
        optimizer: the inner optimiser, a ``GradientTransformation`` (an older ``SGD`` or ``Adam`` is
            turned into one).
        num_steps: inner steps (0 returns ``params``).
        backbone: the names of the backbone parameters in ``params``.
        adapt_backbone: the backbone parameters to adapt (default: all; ``[]`` is ANIL).
            The head is always adapted.
        zero_head: the head in ``params`` is all zeros, which enables the exact shortcuts
            (see the module doc).
        head: ``False``: ``params`` has no head and ``features`` returns the logits
            themselves (``(N, num_outputs(description))``); only backbone parameters adapt.
        first_order, checkpoint, differentiable, use_func: as
            [`inner_loop()`][torchcross.learners.functional.inner_loop].

    Returns:
        The adapted parameters (detached when ``differentiable=False``). With
        ``differentiable=False`` (evaluation) the support loss after the last step is
        compared with the one before the first, and the support logits with a bound: if the
        adaptation diverged ([`DivergenceRule`][torchcross.learners.divergence.DivergenceRule]) the
        parameters are NaN and a
        [`DivergenceWarning`][torchcross.learners.divergence.DivergenceWarning] says so.
    """
    optimizer = as_transformation(optimizer)
    xs, ys = support
    kind = get_task_kind(description)
    targets = kind.encode_labels(ys, description)
    backbone = list(backbone)
    adapted_backbone = backbone if adapt_backbone is None else list(adapt_backbone)
    support_features = FeatureCache(lambda p: features(p, xs), backbone, not checkpoint)

    def support_logits(p: ParamDict) -> Tensor:
        if not head:
            return check_logits(support_features(p), description)
        return head_forward(support_features(p), _head(p))

    def support_loss(p: ParamDict) -> Tensor:
        return kind.loss(support_logits(p), targets, None, "mean")

    kwargs: dict[str, Any] = dict(
        first_order=first_order, checkpoint=checkpoint, differentiable=differentiable, use_func=use_func
    )
    steps, state, first_loss = num_steps, None, None
    if steps and head and adapted_backbone and zero_head and skips_zero_gradients(optimizer):
        # Under a zero head the backbone's gradient is exactly zero, so the first step
        # only moves the head; the backbone's support features are reused by the second.
        pull = None
        if steps > 1 and use_func and not checkpoint:
            # under torch.func the features' pull-back comes from a vjp taken as they are computed
            support_features.value, pull = _features_with_vjp(features, params, xs, adapted_backbone)
            support_features.key = [params[n] for n in backbone]
        params, state, first_loss = inner_loop(support_loss, params, optimizer, 1, adapt=HEAD_NAMES, **kwargs)
        steps -= 1
        if pull is not None:
            params, state = _func_step_on_cached_features(
                support_features(params), pull, params, targets, description, optimizer, state, first_order
            )
            steps -= 1
        cached = differentiable and not use_func and not checkpoint
        if steps and cached and all(params[k].requires_grad for k in adapted_backbone):
            params, state = step_on_cached_features(
                support_features(params),
                params,
                adapted_backbone,
                targets,
                description,
                optimizer,
                state,
                first_order=first_order,
            )
            steps -= 1
    adapt = [*adapted_backbone, *(HEAD_NAMES if head else ())]
    params, _, losses = inner_loop(support_loss, params, optimizer, steps, adapt=adapt, state=state, **kwargs)
    if not differentiable:
        params = {k: v.detach() for k, v in params.items()}
        if num_steps:  # evaluation: a diverged adaptation predicts NaN (see torchcross.learners.divergence)
            start = first_loss if first_loss is not None else losses
            with torch.no_grad():
                logits = support_logits(params)
                final = kind.loss(logits, targets, None, "mean")
            params = nan_if_diverged(params, float(start[0]), final, logits, description, "the inner loop")
    return params


def adapted_logits(
    features: Callable[[ParamDict, Tensor], Tensor],
    params: ParamDict,
    x: Tensor,
    description: TaskDescription,
    *,
    head: bool = True,
) -> Tensor:
    """Logits of ``x`` under (adapted) ``params``: the features through the head ``"head.weight"`` /
    ``"head.bias"``, or (``head=False``) the features themselves, checked against the task's width."""
    if not head:
        return check_logits(features(params, x), description)
    return head_forward(features(params, x), _head(params))


def maml_task_loss(
    features: Callable[[ParamDict, Tensor], Tensor],
    params: ParamDict,
    support: tuple[Tensor, Tensor],
    query: tuple[Tensor, Tensor],
    description: TaskDescription,
    optimizer: GradientTransformation | InnerOptimizer,
    num_steps: int,
    **adapt_kwargs: Any,
) -> Tensor:
    """MAML's task loss over a backbone and a linear head: adapt on ``support``
    ([`adapt_backbone_and_head()`][adapt_backbone_and_head], which
    takes ``adapt_kwargs``), return the loss of the task's kind on ``query`` (inputs, canonical labels).

    The backbone-and-head counterpart of
    [`maml_query_loss()`][torchcross.learners.functional.maml_query_loss]; differentiate it with respect to
    ``params`` for the meta-gradient. [`MAML`][torchcross.learners.maml.MAML] computes its task losses with
    it.

    Examples:
        >>> from torchcross.learners.transforms import sgd
        >>> from torchcross.tasks.task import TaskDescription
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> w = torch.eye(2, requires_grad=True)
        >>> params = {"backbone.w": w, "head.weight": torch.zeros(1, 2), "head.bias": torch.zeros(1)}
        >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1], [0]])
        >>> q = maml_task_loss(
        ...     lambda p, x: x @ p["backbone.w"],
        ...     params,
        ...     (x, y),
        ...     (x, y),
        ...     d,
        ...     sgd(1.0),
        ...     2,
        ...     backbone=["backbone.w"],
        ...     zero_head=True,
        ... )
        >>> q.shape, torch.autograd.grad(q, w)[0].shape
        (torch.Size([]), torch.Size([2, 2]))
    """
    adapted = adapt_backbone_and_head(
        features, params, support, description, optimizer, num_steps, **adapt_kwargs
    )
    logits = adapted_logits(features, adapted, query[0], description, head=adapt_kwargs.get("head", True))
    return loss(logits, query[1], description)
