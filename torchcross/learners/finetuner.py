"""Fine-tuning per episode: the IM-PT / mm-PT evaluation learner.

[`FineTuner`][FineTuner] gives every episode a new head sized from its
description and trains it on the support set for ``num_steps`` full-batch steps with SGD or Adam, either alone
on frozen features (a linear probe) or together with a copy of the backbone; then it predicts the query set.
Episodes are independent: the backbone module is never modified (with ``HeadPolicy(init="kaiming")``,
episode ``n`` gets the head of the key ``(seed, n, -1)``, the counter ``head_step`` in ``state_dict``;
with ``HeadPolicy(key="episode")`` an episode's head is keyed by its support set instead).
``head=nn.Linear(...)`` starts every episode
from a copy of a given head instead (e.g. a MAML's meta-learned ``maml.head``), and ``head=None`` fine-tunes a
backbone that outputs the logits itself ([`torchcross.learners.task_heads`][torchcross.learners.task_heads]).

With a frozen backbone, [`FineTuner.predict_many()`][FineTuner.predict_many]
computes every distinct input's
features once and fits the heads of all episodes in one batched run, giving the same
logits as [`FineTuner.predict()`][FineTuner.predict] episode by episode. Fine-tuning the backbone
with ``batching="vmap"`` (or ``"auto"``, see there), it fine-tunes equally shaped episodes together,
each with its own stacked copy of backbone and head, in one computation (grouped convolutions on a CPU
for a backbone of ``GROUPED_LAYERS``, ``torch.func.vmap`` otherwise), in chunks that shrink when memory
runs out; the logits equal the loop's up to float rounding.

BatchNorm policy (`FINETUNE_BATCH_NORM`): ``batch_norm="frozen"`` (default here)
runs normalisation layers with their stored running statistics, never updated (what
pre-trained weights expect); ``"batch"`` normalises every forward with the statistics of
its batch; ``"support"`` normalises with the support set's statistics:

* fine-tuning the backbone, train mode on the support set (batch statistics, running
  statistics updated on a per-episode copy, once per fine-tuning step) and eval mode on
  the query set with those updated statistics (train mode for fitting, eval mode for
  testing, as a standard training loop would);
* a linear probe (``finetune_backbone=False``) computes the support features once, so it
  first sets the running statistics (of a per-episode copy) to the support set's own
  (one train-mode pass with momentum 1: mean and unbiased variance), then computes the
  support features it fits the head on and the query features alike, in eval mode with
  those statistics: support and query are normalised identically. (A training loop that
  recomputed the frozen features in train mode at every step would move its running
  statistics towards the same values, 99.5% of the way after 50 steps.)

The backbone's own buffers are never changed under any policy.

Evaluation never scores a diverged fine-tuning run: if the support loss after the last
step is non-finite or far above the one before the first, or a support logit is absurdly
large ([`DivergenceRule`][torchcross.learners.divergence.DivergenceRule]), the episode's
logits are NaN, with a [`DivergenceWarning`][torchcross.learners.divergence.DivergenceWarning].

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import Task, TaskDescription
    >>> from torchcross.learners.backbones import mlp
    >>> backbone = mlp(4, (8,))
    >>> from torchcross.learners.policies import InnerLoop
    >>> tuner = FineTuner(backbone, backbone.num_features, inner=InnerLoop(lr=0.1, steps=5, optimizer="adam"))
    >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
    >>> task = Task((torch.randn(6, 4), torch.arange(3).repeat(2)), (torch.randn(3, 4), torch.arange(3)), d)
    >>> tuner.predict(task).shape
    torch.Size([3, 3])
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from torchcross._checks import check_int
from torchcross.learners._grouped import (
    GROUPED_CPU_BYTES,
    GroupedLayoutError,
    GroupedPlan,
    grouped_forward,
    grouped_plan,
)
from torchcross.learners._stacked import ChunkSizer, fit_stacked, is_out_of_memory, stack_dicts
from torchcross.learners._tasks import check_task, naming_task, signature, task_tensors
from torchcross.learners.batching import BATCHING_MODES
from torchcross.learners.divergence import nan_if_diverged
from torchcross.learners.functional import finetune, forward, task_buffers
from torchcross.learners.inner_loop import inner_loop
from torchcross.learners.inner_optimizers import SGD, Adam, InnerOptimizer, as_transformation
from torchcross.learners.policies import (
    HEAD_KEYWORDS,
    HeadPolicy,
    InnerLoop,
    head_keywords,
    head_policy_from_keywords,
    split_keywords,
)
from torchcross.learners.task_adaptation import check_logits
from torchcross.learners.task_heads import check_head_width, per_task_head, resolve_head
from torchcross.learners.transforms import check_learning_rate, is_elementwise
from torchcross.nn import get_task_kind, head_forward
from torchcross.tasks.task import Task, TaskDescription

__all__ = ["FINETUNER_KEYWORDS", "FINETUNE_BATCH_NORM", "FineTuner"]

ParamDict = dict[str, Tensor]

FINETUNE_BATCH_NORM = ("frozen", "batch", "support")
"""BatchNorm policies of [`FineTuner`][torchcross.learners.finetuner.FineTuner] (see the module doc)."""


class _NormsMomentum:
    """Context: every normalisation layer of ``module`` with the given ``momentum``; restored on exit."""

    def __init__(self, module: nn.Module, momentum: float) -> None:
        self._mods = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        self._momentum = momentum
        self._saved = [m.momentum for m in self._mods]

    def __enter__(self) -> None:
        for m in self._mods:
            m.momentum = self._momentum

    def __exit__(self, *exc: object) -> None:
        for m, momentum in zip(self._mods, self._saved):
            m.momentum = momentum


class _NormsInMode:
    """Context: every normalisation layer of ``module`` in train (or eval) mode; restored on exit."""

    def __init__(self, module: nn.Module, training: bool) -> None:
        self._mods = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        self._training = training
        self._saved = [m.training for m in self._mods]

    def __enter__(self) -> None:
        for m in self._mods:
            m.training = self._training

    def __exit__(self, *exc: object) -> None:
        for m, mode in zip(self._mods, self._saved):
            m.training = mode


def _has_batch_statistics(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._NormBase) for m in module.modules())


def _unique_rows(x: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """``(representatives, inverse)`` with ``x[representatives][inverse]`` equal to ``x`` row for row.

    Rows are grouped by a random projection, then checked exactly; if the check fails
    (a projection collision, NaNs) every row is its own representative.
    """
    n = x.shape[0]
    identity = torch.arange(n, device=x.device)
    if n == 0:
        return identity, identity
    flat = x.reshape(n, -1)
    gen = torch.Generator(device=x.device).manual_seed(0)
    proj = torch.randn(flat.shape[1], 2, generator=gen, device=x.device, dtype=torch.float64)
    keys = flat.to(torch.float64) @ proj
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    reps = torch.empty(int(inverse.max()) + 1, dtype=torch.long, device=x.device).scatter_(
        0, inverse, identity
    )
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        if not torch.equal(flat[rows], flat[reps[inverse[rows]]]):
            return identity, identity
    return reps, inverse


def _support_digest(task: Task) -> int:
    """A 63-bit number of the SHA-256 of a task's support inputs and labels (dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for t in task.support[:2]:
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return int.from_bytes(digest.digest()[:8], "little") >> 1


FINETUNER_KEYWORDS = ("num_steps", "lr", "optimizer", "weight_decay", "momentum", "head_init", "seed")
"""FineTuner's older keyword arguments, still accepted: the first five instead of ``inner=``, the last two
(with ``head`` given as ``"per_task"``, an ``nn.Linear`` or ``None``) instead of a ``HeadPolicy``."""


def _finetune_loop(inner: InnerLoop | None, legacy: dict[str, Any]) -> InnerLoop:
    """``inner`` (checked: fine-tuning has steps, a learning rate and an optimiser), or the one of the older
    keywords (default: 100 Adam steps of learning rate 1e-3)."""
    if inner is not None:
        if not isinstance(inner, InnerLoop):
            raise TypeError(f"inner must be an InnerLoop(lr=..., steps=...), got {type(inner).__name__}")
        if legacy:
            raise TypeError(
                f"inner=InnerLoop(...) replaces {', '.join(sorted(legacy))}=: pass lr, steps and optimizer "
                "(e.g. functools.partial(Adam, weight_decay=0.01)) in the InnerLoop"
            )
        extra = [f for f in ("eval_steps", "first_order", "anil", "meta_sgd") if getattr(inner, f)]
        if extra:
            raise ValueError(
                f"FineTuner fine-tunes without a graph and meta-learns nothing: InnerLoop {', '.join(extra)} "
                "must be left out (a linear probe is finetune_backbone=False)"
            )
        return inner
    steps = check_int(legacy.get("num_steps", 100), "num_steps", 0)
    optimizer = legacy.get("optimizer", "adam")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    lr = legacy.get("lr", 1e-3)
    weight_decay, momentum = legacy.get("weight_decay", 0.0), legacy.get("momentum", 0.0)
    make: Any = optimizer
    if optimizer == "adam" and weight_decay != 0.0:
        make = functools.partial(Adam, weight_decay=weight_decay)
    elif optimizer == "sgd" and (momentum, weight_decay) != (0.0, 0.0):
        make = functools.partial(SGD, momentum=momentum, weight_decay=weight_decay)
    check_learning_rate(lr)  # the optimiser's other settings are checked when FineTuner builds it
    return InnerLoop(lr, steps, optimizer=make)


class FineTuner(nn.Module):
    """Fine-tune a new head (and optionally the backbone) on each episode's support set.

    Args:
        backbone: maps inputs to features ``(N, num_backbone_features)``.
        num_backbone_features: feature width.
        inner: the fine-tuning run ([`InnerLoop`][InnerLoop]): ``steps``
            full-batch steps on the support set of learning rate ``lr`` with ``optimizer`` (``"adam"``,
            ``"sgd"`` or a callable ``lr -> optimiser``, e.g. ``functools.partial(SGD, momentum=0.9)``).
            Default: ``InnerLoop(lr=1e-3, steps=100, optimizer="adam")``.
        finetune_backbone: also train (a copy of) the backbone; ``False`` is a linear probe.
        head: a [`HeadPolicy`][HeadPolicy]: ``HeadPolicy()`` (default): a new
            head per episode (``init="kaiming"``: episode ``n`` gets the head of the key ``(seed, n, -1)``
            ([`per_task_head()`][per_task_head], as MAML draws its heads),
            where the buffer ``head_step`` (saved in ``state_dict``) counts the episodes fine-tuned:
            every ``adapt()`` and ``predict()`` call, and every episode of ``predict_many()`` in order);
            ``HeadPolicy.learned(module=nn.Linear(num_backbone_features, N))``: every episode starts from a
            copy of it (the module is never modified; every episode must have ``N`` outputs);
            ``HeadPolicy.none()``: no head, the backbone outputs the logits (needs
            ``finetune_backbone=True``).
        batch_norm: ``"frozen"``, ``"batch"`` or ``"support"`` (see module doc).
        batching: how [`predict_many()`][FineTuner.predict_many] fine-tunes a backbone:
            ``"vmap"``: equally shaped episodes together (each its own copy of backbone and head, one
            vectorised computation), ``"loop"``: one by one, ``"auto"`` (default): ``"vmap"`` on an
            accelerator, and on the CPU for a backbone built of the layers of ``GROUPED_LAYERS`` in
            ``torchcross.learners._grouped`` (e.g. Conv4), whose stacked episodes run there as grouped
            convolutions, about 2x the loop's speed; ``"loop"`` on the CPU for other backbones (under
            ``torch.func.vmap`` the stacked run is slower than the loop there; docs/learners.md). A
            linear probe is batched under ``"auto"`` and ``"vmap"``.
        **legacy: ``feature_batch_size`` (inputs per backbone call of a batched linear probe in
            [`predict_many()`][FineTuner.predict_many], default 256), and the older keywords
            (`FINETUNER_KEYWORDS`), still accepted: ``num_steps``, ``lr``,
            ``optimizer``, ``weight_decay``, ``momentum`` (instead of ``inner``), and with ``head`` given as
            ``"per_task"``, an ``nn.Linear`` or ``None``: ``head_init`` and ``seed``.

    Raises:
        ValueError: a bad argument, naming it.
        TypeError: an unknown keyword; ``inner`` together with the older keywords it replaces.

    Examples:
        >>> from torchcross.learners.backbones import mlp
        >>> from torchcross.learners.policies import HeadPolicy, InnerLoop
        >>> tuner = FineTuner(
        ...     mlp(4, (8,)), 8, inner=InnerLoop(lr=0.1, steps=5), head=HeadPolicy(init="kaiming")
        ... )
        >>> tuner.num_steps, tuner.head_init
        (5, 'kaiming')
    """

    head_step: Tensor  # a buffer (registered with a per-task "kaiming" head)

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        *,
        inner: InnerLoop | None = None,
        finetune_backbone: bool = False,
        head: HeadPolicy | Literal["per_task"] | nn.Linear | None = "per_task",
        batch_norm: Literal["frozen", "batch", "support"] = "frozen",
        batching: Literal["auto", "loop", "vmap"] = "auto",
        **legacy: Any,
    ) -> None:
        super().__init__()
        feature_batch_size = legacy.pop("feature_batch_size", 256)
        legacy = split_keywords(legacy, FINETUNER_KEYWORDS, "FineTuner")
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        num_backbone_features = check_int(num_backbone_features, "num_backbone_features", 1)
        inner = _finetune_loop(inner, {k: v for k, v in legacy.items() if k not in HEAD_KEYWORDS})
        head_arg, _, head_init, seed = head_keywords(head, legacy, fields="init=, seed=")
        if isinstance(head_arg, str) and head_arg == "learned":
            raise ValueError(
                "FineTuner meta-learns nothing, so it has no head='learned'; pass the nn.Linear to start "
                "every episode from (e.g. head=maml.head of a MAML with a learned head)"
            )
        like = next(backbone.parameters(), torch.zeros(()))
        self.head_mode, given = resolve_head(
            head_arg, num_backbone_features, num_outputs=None, head_init=head_init, seed=seed, like=like
        )
        self.head_policy = (
            head
            if isinstance(head, HeadPolicy)
            else head_policy_from_keywords(head_arg, None, head_init, seed, given)
        )
        if self.head_mode == "none" and not finetune_backbone:
            raise ValueError(
                "head=None with finetune_backbone=False leaves nothing to fine-tune; pass "
                "finetune_backbone=True (the backbone outputs the logits) or a head"
            )
        if batch_norm not in FINETUNE_BATCH_NORM:
            raise ValueError(f"batch_norm must be one of {FINETUNE_BATCH_NORM}, got {batch_norm!r}")
        if feature_batch_size < 1:
            raise ValueError(f"feature_batch_size must be >= 1, got {feature_batch_size!r}")
        if batching not in BATCHING_MODES:
            raise ValueError(f"batching must be one of {BATCHING_MODES}, got {batching!r}")
        self.batching = batching
        self.chunks = ChunkSizer()  # episodes fine-tuned at once: shrinks when a chunk runs out of memory
        self._unbatchable: str | None = None  # why full fine-tuning runs episode by episode
        self.grouped = True
        self._grouped_plan: GroupedPlan | str = grouped_plan(backbone)  # or why it cannot run grouped
        self.head_key = self.head_policy.key
        self.backbone, self.num_backbone_features = backbone, num_backbone_features
        self.head: nn.Linear | None = given
        self.head_init = None if self.head_mode != "per_task" else self.head_policy.init
        self.inner, self.num_steps, self.finetune_backbone = inner, inner.steps, bool(finetune_backbone)
        self.batch_norm, self.feature_batch_size, self.seed = batch_norm, feature_batch_size, seed
        make = inner.optimizer
        if isinstance(make, str):
            make = Adam if make == "adam" else SGD
        self.inner_optimizer: InnerOptimizer = make(inner.lr)
        if (
            batching == "vmap"
            and self.finetune_backbone
            and not is_elementwise(as_transformation(make(inner.lr)))
        ):
            raise ValueError(
                f"batching='vmap' fine-tunes episodes together with stacked parameters, which gives each "
                f"episode its own steps only with an element-wise optimiser (sgd, adam and chains of the "
                f"pieces of torchcross.learners.transforms), got {self.inner_optimizer!r}; use "
                "batching='loop' (or 'auto', which then fine-tunes episode by episode)"
            )
        if self.head_mode == "per_task" and self.head_init == "kaiming" and self.head_key == "count":
            self.register_buffer("head_step", torch.zeros((), dtype=torch.long))

    def _new_head(self, task: Task, like: Tensor) -> ParamDict:
        description = task.description
        if self.head_mode != "per_task":
            width = self.num_backbone_features if self.head is None else self.head.out_features
            check_head_width(description, self.head_mode, width)
            if self.head is None:
                return {}
            return {k: v.detach().clone() for k, v in self.head.named_parameters()}
        step = 0
        if self.head_init == "kaiming" and self.head_key == "episode":
            step = _support_digest(task)
        elif self.head_init == "kaiming":  # episode head_step's head; the next episode gets the next one
            step = int(self.head_step)
            with torch.no_grad():
                self.head_step += 1
        return per_task_head(
            self.num_backbone_features,
            description,
            cast(str, self.head_init),  # per-task heads have one
            key=(self.seed, step, -1),
            like=like,
        )

    def _like(self) -> Tensor:
        return next(self.backbone.parameters(), torch.zeros(()))

    def _episode_buffers(self) -> dict[str, Any]:
        # "support" updates running statistics: on detached copies, never on the module's own
        return task_buffers(self.backbone, "frozen" if self.batch_norm == "support" else self.batch_norm)

    def _features(
        self, params: ParamDict, buffers: dict[str, Any], x: Tensor, fitting: bool = False
    ) -> Tensor:
        if self.batch_norm != "support":
            return forward(self.backbone, params, buffers, x, self.batch_norm)
        with _NormsInMode(self.backbone, training=fitting):
            return forward(self.backbone, params, buffers, x, "batch")

    def _set_support_statistics(self, params: ParamDict, buffers: dict[str, Any], x: Tensor) -> None:
        """Set the running statistics in ``buffers`` (a per-episode copy) to those of ``x``: one
        train-mode pass with momentum 1 (a linear probe under the ``"support"`` policy)."""
        with _NormsMomentum(self.backbone, 1.0):
            self._features(params, buffers, x, fitting=True)

    def _finetune(
        self,
        logits_fn: Any,
        params: ParamDict,
        targets: Tensor,
        desc: TaskDescription,
        final_logits: Any = None,
    ) -> ParamDict:
        """Fine-tune ``params`` on the loss of ``logits_fn(params)``; NaN parameters (and a warning) if the
        run diverged, judged by the support logits after it (``final_logits``, default ``logits_fn``)."""
        kind = get_task_kind(desc)

        def loss_fn(p: ParamDict) -> Tensor:
            return kind.loss(logits_fn(p), targets, None, "mean")

        result = inner_loop(loss_fn, params, self.inner_optimizer, self.num_steps, differentiable=False)
        if not self.num_steps:
            return result.params
        with torch.no_grad():
            logits = (final_logits or logits_fn)(result.params)
            final = kind.loss(logits, targets, None, "mean")
        return nan_if_diverged(result.params, float(result.losses[0]), final, logits, desc, "fine-tuning")

    @torch.inference_mode(False)
    def adapt(self, task: Task) -> ParamDict:
        """Fine-tuned parameters for ``task``: ``"head.*"`` and (if fine-tuned) ``"backbone.*"``, detached."""
        with naming_task(task):
            return self._adapt(task)[0]

    def _adapt(self, task: Task, head: ParamDict | None = None) -> tuple[ParamDict, dict[str, Any]]:
        task = check_task(task)
        xs, ys, _, _, desc = task_tensors(task)
        kind = get_task_kind(desc)
        targets = kind.encode_labels(ys, desc)
        buffers = self._episode_buffers()
        backbone = {k: v.detach() for k, v in self.backbone.named_parameters()}
        if head is None:
            head = self._new_head(task, self._like())
        if not self.finetune_backbone:
            with torch.no_grad():
                if self.batch_norm == "support" and _has_batch_statistics(self.backbone):
                    # support and query features are normalised alike, with the support's statistics
                    self._set_support_statistics(backbone, buffers, xs)
                feats = self._features(backbone, buffers, xs)

            def probe_logits(p: ParamDict) -> Tensor:
                return head_forward(feats, p)

            fitted = self._finetune(probe_logits, head, targets, desc)
            return {"head.weight": fitted["weight"], "head.bias": fitted["bias"]}, buffers
        params = {
            **{"backbone." + k: v for k, v in backbone.items()},
            **{"head." + k: v for k, v in head.items()},
        }

        def full_logits(p: ParamDict, buffers: dict[str, Any] = buffers) -> Tensor:
            backbone_params = {k[9:]: v for k, v in p.items() if k.startswith("backbone.")}
            return self._logits(self._features(backbone_params, buffers, xs, fitting=True), p, desc)

        def final_logits(p: ParamDict) -> Tensor:  # on copies: "support" would update the statistics
            return full_logits(p, {k: v.clone() if isinstance(v, Tensor) else v for k, v in buffers.items()})

        return self._finetune(full_logits, params, targets, desc, final_logits), buffers

    def _logits(self, features: Tensor, params: ParamDict, desc: TaskDescription) -> Tensor:
        if self.head_mode == "none":
            return check_logits(features, desc)
        return head_forward(features, {"weight": params["head.weight"], "bias": params["head.bias"]})

    @torch.inference_mode(False)
    def predict(self, task: Task) -> Tensor:
        """Query logits ``(N_query, num_outputs)`` after fine-tuning on ``task``'s support set."""
        return self._predict_one(task)

    def _predict_one(self, task: Task, head: ParamDict | None = None) -> Tensor:
        with naming_task(task):
            params, buffers = self._adapt(task, head)
            _, _, xq, _, _ = task_tensors(task)
            backbone = {k[9:]: v for k, v in params.items() if k.startswith("backbone.")}
            if not backbone:
                backbone = {k: v.detach() for k, v in self.backbone.named_parameters()}
            with torch.no_grad():
                feats = self._features(backbone, buffers, xq)
                return self._logits(feats, params, task.description)

    def _batched_ok(self) -> bool:
        return (
            self.batching != "loop"
            and not self.finetune_backbone
            and not (self.batch_norm in ("batch", "support") and _has_batch_statistics(self.backbone))
        )

    def _stacks_backbone(self) -> bool:
        """Whether full fine-tuning runs equally shaped episodes together."""
        if self.batching == "loop" or self._unbatchable is not None:
            return False
        if not is_elementwise(as_transformation(self.inner_optimizer)):
            return False  # "vmap" refuses such an optimiser when it is built
        device = self._like().device
        return self.batching == "vmap" or device.type != "cpu" or self._runs_grouped(device)

    def _runs_grouped(self, device: torch.device) -> bool:
        """Whether stacked episodes run as grouped convolutions (on a CPU, for a backbone of
        ``GROUPED_LAYERS``) rather than under ``torch.func.vmap``."""
        return self.grouped and isinstance(self._grouped_plan, GroupedPlan) and device.type == "cpu"

    def _grouped_chunk(self, task: Task) -> int:
        """Episodes per grouped run on a CPU: as many as keep the first layer's output of all of them
        within ``GROUPED_CPU_BYTES``, and at least two."""
        plan = cast(GroupedPlan, self._grouped_plan)
        first = next((s.module for s in plan.steps if s.kind in ("conv", "linear")), None)
        x = task.support[0]
        width = getattr(first, "out_channels", None) or getattr(first, "out_features", None) or 1
        per_episode = x.shape[0] * width * max(1, math.prod(x.shape[2:])) * x.element_size()
        return max(2, GROUPED_CPU_BYTES // per_episode)

    def _grouped_features(
        self, params: ParamDict, buffers: dict[str, Any], x: Tensor, fitting: bool
    ) -> Tensor:
        """``(E, N, F)`` features of stacked episodes, run as grouped convolutions; BatchNorm as
        `_features()` runs it."""
        plan = cast(GroupedPlan, self._grouped_plan)
        if self.batch_norm == "batch":
            modes: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        else:  # "support": train mode for fitting, eval for the query; "frozen": eval mode
            modes = _NormsInMode(self.backbone, training=fitting and self.batch_norm == "support")
        with modes:
            return grouped_forward(plan, params, buffers, x, channels_last=x.device.type == "cpu")

    @torch.inference_mode(False)
    def predict_many(self, tasks: Sequence[Task]) -> list[Tensor]:
        """``[predict(t) for t in tasks]``, batched (see ``batching``).

        Per-task ``"kaiming"`` heads are the loop's too: the episodes take the keys
        ``(seed, head_step + i, -1)`` in order, and ``head_step`` ends ``len(tasks)`` further on.

        With a linear probe whose features do not depend on the batch (no BatchNorm, or
        ``batch_norm="frozen"``), every distinct input goes through the backbone once and
        the heads of equally shaped episodes of one description are fitted together.

        Fine-tuning the backbone with ``batching="vmap"`` (or ``"auto"``, see ``batching``), episodes of
        one description and equal shapes are fine-tuned together: each its own copy of the backbone and
        its head, stacked along a first dimension and run as one computation (on a CPU, for a backbone of
        ``GROUPED_LAYERS``, as grouped convolutions in chunks of about ``GROUPED_CPU_BYTES`` of
        activations; otherwise ``torch.func.functional_call`` under ``torch.func.vmap``; set
        ``tuner.grouped = False`` to always use ``vmap``), the optimiser's steps taken on the
        stacked parameters (an element-wise optimiser updates each slice as it would alone), BatchNorm
        per episode exactly as ``predict()`` runs it, divergence judged per episode. The logits equal the
        loop's up to float rounding. A chunk that runs out of memory is halved and retried (``chunks``
        remembers the size that fits); a backbone that cannot run under ``vmap`` (random layers in
        train mode, data-dependent control flow) is fine-tuned episode by episode, with a warning.

        Otherwise episodes run one by one.
        """
        tasks = [check_task(t) for t in tasks]
        if self.finetune_backbone:
            return self._predict_many_full(tasks)
        shapes = {tuple(t.support[0].shape[1:]) for t in tasks} | {tuple(t.query[0].shape[1:]) for t in tasks}
        if not tasks or not self._batched_ok() or len(shapes) != 1:
            return [self.predict(t) for t in tasks]
        tensors = [task_tensors(t) for t in tasks]
        inputs = torch.cat([x for xs, _, xq, _, _ in tensors for x in (xs, xq)])
        reps, inverse = _unique_rows(inputs)
        backbone = {k: v.detach() for k, v in self.backbone.named_parameters()}
        buffers = self._episode_buffers()
        with torch.no_grad(), naming_task(tasks[0]):  # every task has these input shapes
            unique = inputs[reps]
            feats = torch.cat(
                [
                    self._features(backbone, buffers, unique[i : i + self.feature_batch_size])
                    for i in range(0, unique.shape[0], self.feature_batch_size)
                ]
            )[inverse]
        per_task, offset = [], 0
        for xs, _, xq, _, _ in tensors:
            fs = feats[offset : offset + xs.shape[0]]
            offset += xs.shape[0]
            per_task.append((fs, feats[offset : offset + xq.shape[0]]))
            offset += xq.shape[0]
        heads = [self._new_head(t, self._like()) for t in tasks]
        groups: dict[Any, list[int]] = {}
        for i, t in enumerate(tasks):
            key = (t.description, tuple(t.support[1].shape), tuple(t.query[0].shape))
            groups.setdefault(key, []).append(i)
        out: list[Tensor | None] = [None] * len(tasks)
        for (desc, _, _), idx in groups.items():
            logits = self._fit_group(
                desc, [per_task[i] for i in idx], [tensors[i][1] for i in idx], [heads[i] for i in idx]
            )
            for i, lg in zip(idx, logits):
                out[i] = lg
        return out  # type: ignore[return-value]

    def _predict_many_full(self, tasks: list[Task]) -> list[Tensor]:
        heads = [self._new_head(t, self._like()) for t in tasks]  # the loop's heads, in its order
        groups: dict[Any, list[int]] = {}
        for i, t in enumerate(tasks):
            groups.setdefault(signature([t]), []).append(i)
        out: list[Tensor | None] = [None] * len(tasks)
        for idx in groups.values():
            logits: list[Tensor] | None = None
            failure = None
            if len(idx) > 1 and self._stacks_backbone():
                cap = (
                    self._grouped_chunk(tasks[idx[0]])
                    if self._runs_grouped(self._like().device)
                    else len(idx)
                )
                try:
                    logits = [
                        lg
                        for start in range(0, len(idx), cap)
                        for lg in self.chunks.run(
                            idx[start : start + cap],
                            lambda chunk: self._predict_stacked(
                                [tasks[i] for i in chunk], [heads[i] for i in chunk]
                            ),
                        )
                    ]
                except RuntimeError as exc:
                    if is_out_of_memory(exc):
                        raise
                    failure = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            if logits is None:  # the loop raises its own error for bad episodes
                logits = [self._predict_one(tasks[i], heads[i]) for i in idx]
            if failure is not None:  # the episodes are fine, the backbone cannot run under vmap
                self._unbatchable = failure
                warnings.warn(
                    f"fine-tuning episodes together failed ({failure}); this FineTuner now fine-tunes "
                    "episode by episode (batching='loop' says so up front)",
                    RuntimeWarning,
                    stacklevel=3,
                )
            for i, lg in zip(idx, logits):
                out[i] = lg
        return out  # type: ignore[return-value]

    def _predict_stacked(self, tasks: list[Task], heads: list[ParamDict]) -> list[Tensor]:
        """The query logits of equally shaped episodes of one description, fine-tuned together."""
        n, desc = len(tasks), tasks[0].description
        kind = get_task_kind(desc)
        tensors = [task_tensors(t) for t in tasks]
        xs, xq = torch.stack([t[0] for t in tensors]), torch.stack([t[2] for t in tensors])
        targets = torch.stack([kind.encode_labels(t[1], desc) for t in tensors])
        params = {
            **{"backbone." + k: v.detach().expand(n, *v.shape) for k, v in self.backbone.named_parameters()},
            **{"head." + k: v for k, v in stack_dicts(heads).items()},
        }
        # every episode its own copy of the buffers ("support" updates its running statistics)
        one = self._episode_buffers()
        buffers = {k: v.expand(n, *v.shape).clone() for k, v in one.items() if v is not None}
        hidden = {k: None for k, v in one.items() if v is None}  # "batch": statistics hidden, not vmapped

        def logits(p: ParamDict, b: dict[str, Any], x: Tensor, fitting: bool) -> Tensor:
            backbone = {k[9:]: v for k, v in p.items() if k.startswith("backbone.")}
            return self._logits(self._features(backbone, {**b, **hidden}, x, fitting=fitting), p, desc)

        def grouped_logits(p: ParamDict, b: dict[str, Any], x: Tensor, fitting: bool) -> Tensor:
            backbone = {k[9:]: v for k, v in p.items() if k.startswith("backbone.")}
            feats = self._grouped_features(backbone, {**b, **hidden}, x, fitting)
            heads = {k: v for k, v in p.items() if k.startswith("head.")}
            return torch.func.vmap(lambda f, h: self._logits(f, h, desc))(feats, heads)

        def stacked_logits(p: ParamDict, b: dict[str, Any], x: Tensor, fitting: bool) -> Tensor:
            """``(E, N, outputs)``: every episode's logits under its own slice of ``p`` and ``b``."""
            if grouped:
                return grouped_logits(p, b, x, fitting)
            return torch.func.vmap(functools.partial(logits, fitting=fitting))(p, b, x)

        def loss(lg: Tensor, y: Tensor) -> Tensor:
            return kind.loss(lg, y, None, "mean")

        episode_losses, transform = torch.func.vmap(loss), as_transformation(self.inner_optimizer)
        grouped = self._runs_grouped(xs.device)
        with naming_task(tasks[0]), warnings.catch_warnings():
            # an operation without a batching rule (CPU attention kernels, for one) runs episode by
            # episode inside vmap: slower, the same result; torch says so on every call
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")

            def fit() -> tuple[ParamDict, Tensor]:  # reads `buffers` and `grouped` as they are then
                return fit_stacked(
                    lambda p: episode_losses(stacked_logits(p, buffers, xs, True), targets),
                    params,
                    transform,
                    self.num_steps,
                )

            if not grouped:
                fitted, first = fit()
            else:
                start = {k: v.clone() for k, v in buffers.items()}  # the statistics before a failed try
                try:
                    fitted, first = fit()
                except GroupedLayoutError as exc:  # a layer the plan accepted met an input it cannot group
                    self._grouped_plan = str(exc)
                    buffers, grouped = start, False
                    fitted, first = fit()
            with torch.no_grad():
                if self.num_steps:  # judged as predict() judges it, on copies of the statistics
                    copies = {k: v.clone() for k, v in buffers.items()}
                    support = stacked_logits(fitted, copies, xs, True)
                    for i in range(n):
                        one = {k: v[i] for k, v in fitted.items()}
                        final = kind.loss(support[i], targets[i], None, "mean")
                        checked = nan_if_diverged(
                            one, float(first[i]), final, support[i], desc, "fine-tuning"
                        )
                        if checked is not one:
                            fitted = {
                                k: torch.cat([v[:i], checked[k][None], v[i + 1 :]]) for k, v in fitted.items()
                            }
                query = stacked_logits(fitted, buffers, xq, False)
        return list(query.unbind(0))

    def _fit_group(
        self,
        desc: TaskDescription,
        feats: list[tuple[Tensor, Tensor]],
        labels: list[Tensor],
        heads: list[ParamDict],
    ) -> Tensor:
        kind = get_task_kind(desc)
        fs = torch.stack([f for f, _ in feats])
        fq = torch.stack([f for _, f in feats])
        targets = torch.stack([kind.encode_labels(y, desc) for y in labels])
        stacked = {k: torch.stack([h[k] for h in heads]) for k in heads[0]}

        def episode_loss(p: ParamDict, f: Tensor, t: Tensor) -> Tensor:
            return kind.loss(head_forward(f, p), t, None, "mean")

        batched_loss = torch.func.vmap(episode_loss)

        def total_loss(p: ParamDict) -> Tensor:
            # a sum of per-episode losses: each head gets exactly its own episode's gradient
            return batched_loss(p, fs, targets).sum()

        fitted = finetune(total_loss, stacked, self.inner_optimizer, self.num_steps)
        if self.num_steps:  # every episode's own divergence check, as predict() makes it
            with torch.no_grad():
                start, final = batched_loss(stacked, fs, targets).tolist(), batched_loss(fitted, fs, targets)
                logits = torch.func.vmap(head_forward)(fs, fitted)
            for i in range(fs.shape[0]):
                one = {k: v[i] for k, v in fitted.items()}
                checked = nan_if_diverged(one, start[i], final[i], logits[i], desc, "fine-tuning")
                if checked is not one:
                    fitted = {k: torch.cat([v[:i], checked[k][None], v[i + 1 :]]) for k, v in fitted.items()}
        return torch.func.vmap(head_forward)(fq, fitted)
