"""MAML across task kinds: second order, first order, ANIL and Meta-SGD, with a fresh or a learned head.

[`MAML`][MAML] meta-learns a backbone. By default (``head="per_task"``) it makes a
new linear head for every task, sized from the task's description (zero-initialised by default, as in the
MedIMeta paper's mm-MAML), adapts backbone and head on the support set with a few inner steps, and scores the
query set with the loss of the task's kind. Tasks of different kinds and class counts mix freely in one
meta-batch.

Classic MAML (Finn et al. 2017) meta-learns the head too: ``head="learned"`` with
``num_outputs=N`` (or ``head=nn.Linear(num_backbone_features, N)``) holds one head whose
weights are parameters of the module, every task's starting head, adapted in the inner
loop (alone under ANIL) and meta-learned by the outer loop; ``head=None`` uses the
backbone's output as the logits. Every task must then have ``N`` outputs
([`torchcross.learners.task_heads`][torchcross.learners.task_heads]).

BatchNorm policy (``batch_norm="batch"``, the default): every forward pass normalises
with the statistics of the batch it sees (support batch during adaptation, query batch
for the query predictions, as in MAML), in train and eval mode alike; running
statistics are hidden from the backbone, so no learner method reads or writes them.
``batch_norm="frozen"`` uses the stored running statistics as constants instead.

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import Task, TaskDescription
    >>> from torchcross.learners.backbones import mlp
    >>> backbone = mlp(4, (8,))
    >>> from torchcross.learners.policies import InnerLoop
    >>> maml = MAML(backbone, backbone.num_features, inner=InnerLoop(lr=0.1, steps=2))
    >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
    >>> task = Task(
    ...     (torch.randn(6, 4), torch.tensor([0, 1] * 3)), (torch.randn(4, 4), torch.tensor([0, 1] * 2)), d
    ... )
    >>> loss = maml.meta_loss([task])
    >>> loss.backward()
    >>> maml.predict(task).shape
    torch.Size([4, 1])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from torchcross._checks import check_int
from torchcross.distributed.gradients import all_reduce_gradients, check_unwrapped
from torchcross.distributed.seeds import rank_and_world_size
from torchcross.learners import batching as _batching
from torchcross.learners._tasks import as_task_list, check_task, naming_task, task_tensors
from torchcross.learners.meta_sgd import init_meta_sgd_rates, split_meta_sgd_rates, with_meta_sgd_rates
from torchcross.learners.policies import (
    HEAD_KEYWORDS,
    INNER_LOOP_KEYWORDS,
    HeadPolicy,
    InnerLoop,
    head_keywords,
    head_policy_from_keywords,
    inner_loop_from_keywords,
    split_keywords,
)
from torchcross.learners.stateless import BATCH_NORM_POLICIES, forward, task_buffers
from torchcross.learners.task_adaptation import (
    HEAD_NAMES,
    adapt_backbone_and_head,
    adapted_logits,
    maml_task_loss,
)
from torchcross.learners.task_heads import check_head_width, per_task_head, resolve_head
from torchcross.learners.transforms import LearningRate, adam, sgd
from torchcross.tasks.task import Task, TaskDescription

__all__ = ["MAML", "CrossDomainMAML"]

ParamDict = dict[str, Tensor]
_PREFIX = "backbone."


class MAML(nn.Module):
    """Model-agnostic meta-learning with a new head per task (or a learned one), for tasks of any kind.

    Args:
        backbone: maps inputs to features ``(N, num_backbone_features)``.
        num_backbone_features: feature width (sizes each task's head; with no head the
            number of logits).
        inner: the inner loop ([`InnerLoop`][InnerLoop]): learning rate (the
            starting value of the learned ones with ``meta_sgd``), steps in training and in
            [`predict()`][MAML.predict] (``eval_steps``), ``first_order`` (FOMAML),
            ``anil`` (adapt only the head; the backbone still gets meta-gradients), ``meta_sgd`` (learn
            per-element inner learning rates for the backbone and one per per-task head tensor, or per element
            for a learned head; parameters of this module, ``inner_lrs``) and ``optimizer`` (``"sgd"``,
            ``"adam"`` or a callable ``lr -> optimiser``).
        head: a [`HeadPolicy`][HeadPolicy]: ``HeadPolicy()`` (default): a new
            head for every task; ``HeadPolicy.learned(N)``: one meta-learned head of width ``N``;
            ``HeadPolicy.learned(module=nn.Linear(num_backbone_features, N))``: that module as the
            meta-learned head; ``HeadPolicy.none()``: no head, the backbone outputs the logits. A learned head
            is the module's ``head`` attribute (state_dict keys ``"head.weight"``, ``"head.bias"``). With a
            learned head or none, every task must have the head's width of outputs
            ([`torchcross.nn.num_outputs()`][torchcross.nn.kinds.num_outputs]). Per-task ``"kaiming"`` heads
            are drawn from a generator seeded with ``(seed, head_step, slot)``, where the buffer ``head_step``
            counts training calls ([`meta_loss()`][MAML.meta_loss],
            [`meta_backward()`][MAML.meta_backward]; saved in ``state_dict``) and
            ``slot`` is the task's position in the global meta-batch (``rank * len(tasks) + i`` under
            ``torch.distributed``), so distributed and resumed runs draw the heads of one process. A learned
            head is drawn once, from ``seed``.
        batch_norm: ``"batch"`` or ``"frozen"`` (see module doc).
        checkpoint: recompute inner steps in the backward pass (less memory, more time).
        batching: ``"auto"``, ``"loop"`` or ``"vmap"``: how
            `meta_backward()` runs
            equally shaped tasks of one description (see `torchcross.learners.batching`).
        **legacy: the older keywords, still accepted: ``inner_lr``, ``num_inner_steps``,
            ``eval_num_inner_steps``, ``first_order``, ``anil``, ``meta_sgd``, ``inner_optimizer`` (instead
            of ``inner``), and with ``head`` given as ``"per_task"``, ``"learned"``, an ``nn.Linear`` or
            ``None``: ``num_outputs``, ``head_init`` and ``seed``.

    Attributes:
        vmap_chunk_size: tasks per ``vmap`` call on the ``vmap`` path. ``"auto"`` (default): chunks of
            ``torchcross.learners.batching.CPU_VMAP_CHUNK_SIZE`` (two) tasks on a CPU, the whole
            meta-batch elsewhere; ``None``: the whole meta-batch; an ``int``: that many tasks
            (set it after construction, e.g. ``maml.vmap_chunk_size = 4``). The same meta-gradient either
            way, up to rounding; memory grows with it, as every task of a chunk holds its graph at once: on
            workload A of ``benchmarks/maml.py`` (4 tasks) about 2.8-3.5x the loop's memory unchunked,
            2.1-2.7x in chunks of 2 (docs/learners.md, "Batching tasks with vmap").

    Raises:
        ValueError: a bad argument, naming it.
        TypeError: a ``head`` that is neither a ``HeadPolicy``, a string, an ``nn.Linear`` nor ``None``; an
            unknown keyword; ``inner`` together with the older inner-loop keywords.

    Examples:
        Classic MAML on 5-way tasks, the head meta-learned with the backbone:

        >>> from torchcross.learners.backbones import mlp
        >>> from torchcross.learners.policies import HeadPolicy, InnerLoop
        >>> backbone = mlp(4, (8,))
        >>> maml = MAML(backbone, 8, inner=InnerLoop(lr=0.1, steps=1), head=HeadPolicy.learned(5))
        >>> sorted(k for k in maml.state_dict() if k.startswith("head."))
        ['head.bias', 'head.weight']
    """

    head_step: Tensor  # a buffer (registered with a per-task "kaiming" head)

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        *,
        inner: InnerLoop | None = None,
        head: HeadPolicy | Literal["per_task", "learned"] | nn.Linear | None = "per_task",
        batch_norm: Literal["batch", "frozen"] = "batch",
        checkpoint: bool = False,
        batching: Literal["auto", "loop", "vmap"] = "auto",
        **legacy: Any,
    ) -> None:
        super().__init__()
        legacy = split_keywords(legacy, (*INNER_LOOP_KEYWORDS, *HEAD_KEYWORDS), type(self).__name__)
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        self.backbone = backbone
        self.num_backbone_features = check_int(num_backbone_features, "num_backbone_features", 1)
        inner = _inner_loop(inner, {k: v for k, v in legacy.items() if k in INNER_LOOP_KEYWORDS})
        self.inner = inner
        self.inner_lr, self.num_inner_steps = inner.lr, inner.steps
        self.eval_num_inner_steps = inner.num_eval_steps
        if isinstance(head, HeadPolicy) and head.key != "count":
            raise ValueError(
                f"MAML draws its per-task heads in its own order; HeadPolicy key={head.key!r} is a FineTuner "
                "option: leave key out"
            )
        head_arg, num_outputs, head_init, seed = head_keywords(head, legacy, fields="init=, seed=, width=")
        self.head_mode, learned = resolve_head(
            head_arg,
            self.num_backbone_features,
            num_outputs=num_outputs,
            head_init=head_init,
            seed=seed,
            like=self._like(),
        )
        self.head: nn.Linear | None = learned
        self.head_policy = (
            head
            if isinstance(head, HeadPolicy)
            else head_policy_from_keywords(head_arg, num_outputs, head_init, seed, learned)
        )
        if inner.anil and self.head_mode == "none":
            raise ValueError(
                "anil=True adapts only the head, and head=None has none; pass a head or anil=False"
            )
        if batch_norm not in BATCH_NORM_POLICIES:
            raise ValueError(f"batch_norm must be one of {BATCH_NORM_POLICIES}, got {batch_norm!r}")
        if batching not in _batching.BATCHING_MODES:
            raise ValueError(f"batching must be one of {_batching.BATCHING_MODES}, got {batching!r}")
        self.vmap_chunk_size: int | Literal["auto"] | None = "auto"
        inner_optimizer = inner.optimizer
        if isinstance(inner_optimizer, str):
            inner_optimizer = sgd if inner_optimizer == "sgd" else adam
        self._make_optimizer = inner_optimizer
        self.first_order, self.anil = inner.first_order, inner.anil
        self.head_init = (
            None
            if self.head_policy.kind == "none" or self.head_policy.module is not None
            else (self.head_policy.init)
        )
        self.batch_norm, self.checkpoint, self.batching, self.seed = (
            batch_norm,
            bool(checkpoint),
            batching,
            seed,
        )
        if self.head_mode == "per_task" and self.head_init == "kaiming":
            self.register_buffer("head_step", torch.zeros((), dtype=torch.long))
        self._chooser = _batching.BatchingChooser()
        self.inner_lrs: nn.ParameterDict | None = None
        if inner.meta_sgd:
            meta_params = self._module_params(trainable_only=False)
            rates = init_meta_sgd_rates(meta_params, self._scalar_rate_names(), self.inner_lr)
            self.inner_lrs = nn.ParameterDict({k: nn.Parameter(v) for k, v in rates.items()})

    # ------------------------------------------------------------------ parameters

    def _module_params(self, trainable_only: bool) -> ParamDict:
        """The backbone's parameters (``"backbone.*"``) and a learned head's (``"head.*"``)."""
        named: dict[str, Tensor] = {_PREFIX + k: p for k, p in self.backbone.named_parameters()}
        if self.head is not None:
            named.update({"head." + k: p for k, p in self.head.named_parameters()})
        return {k: p for k, p in named.items() if p.requires_grad} if trainable_only else named

    def _scalar_rate_names(self) -> tuple[str, ...]:
        """Meta-SGD: per-task heads change shape between tasks, so they get one rate per tensor."""
        return HEAD_NAMES if self.head_mode == "per_task" else ()

    def _meta(self, detach: bool = False) -> ParamDict:
        meta = self._module_params(trainable_only=False)
        if self.inner_lrs is not None:
            rates = cast("Mapping[str, Tensor]", self.inner_lrs)
            meta = with_meta_sgd_rates(meta, rates, [*meta, *self._scalar_rate_names()])
        return {k: v.detach() for k, v in meta.items()} if detach else meta

    def new_head(self, description: TaskDescription, like: Tensor, slot: int = -1) -> ParamDict:
        """Fresh head parameters ``{"head.weight", "head.bias"}`` on ``like``'s device and dtype.

        ``slot`` is the task's position in the global meta-batch (``-1``: evaluation); with
        ``head_init="kaiming"`` the head is a function of ``(seed, head_step, slot)``. With a
        learned head or none, checks the task's width and returns ``{}`` (a learned head is
        one of the meta-parameters).

        Raises:
            ValueError: with a learned head or none, a task whose ``num_outputs`` differs
                from the head's width.
        """
        if self.head_mode != "per_task":
            width = self.num_backbone_features if self.head is None else self.head.out_features
            check_head_width(description, self.head_mode, width)
            return {}
        step = int(self.head_step) if self.head_init == "kaiming" else 0
        head = per_task_head(
            self.num_backbone_features,
            description,
            cast(str, self.head_init),  # per-task heads have one
            key=(self.seed, step, slot),
            like=like,
        )
        return {"head.weight": head["weight"], "head.bias": head["bias"]}

    def _like(self) -> Tensor:
        return next(self.backbone.parameters(), torch.zeros(()))

    # ------------------------------------------------------------------ one task

    def _features(self, buffers: dict[str, object], params: ParamDict, x: Tensor) -> Tensor:
        backbone = {k[len(_PREFIX) :]: v for k, v in params.items() if k.startswith(_PREFIX)}
        return forward(self.backbone, backbone, buffers, x, self.batch_norm)

    def _adaptation(
        self, meta: ParamDict, head: ParamDict, *, training: bool, use_func: bool = False
    ) -> tuple[Callable[[ParamDict, Tensor], Tensor], ParamDict, dict[str, Any]]:
        """``(features, starting params, adapt_backbone_and_head's other arguments)`` for one task."""
        params, rates = split_meta_sgd_rates(meta)
        lr: LearningRate = self.inner_lr if self.inner_lrs is None else rates
        features = functools.partial(self._features, task_buffers(self.backbone, self.batch_norm))
        backbone = [k for k in params if k.startswith(_PREFIX)]
        trainable = {_PREFIX + k for k, p in self.backbone.named_parameters() if p.requires_grad}
        options = dict(
            optimizer=self._make_optimizer(lr),
            num_steps=self.num_inner_steps if training else self.eval_num_inner_steps,
            backbone=backbone,
            adapt_backbone=[] if self.anil else [k for k in backbone if k in trainable],
            zero_head=self.head_mode == "per_task" and self.head_init == "zero",
            head=self.head_mode != "none",
            first_order=self.first_order,
            checkpoint=self.checkpoint,
            differentiable=training,
            use_func=use_func,
        )
        return features, {**params, **head}, options

    def _adapt(
        self,
        meta: ParamDict,
        head: ParamDict,
        xs: Tensor,
        ys: Tensor,
        desc: TaskDescription,
        *,
        training: bool,
    ) -> tuple[ParamDict, Callable[[ParamDict, Tensor], Tensor]]:
        """Adapted parameters (backbone and head) and the ``(params, x) -> features`` function."""
        features, params, options = self._adaptation(meta, head, training=training)
        return adapt_backbone_and_head(features, params, (xs, ys), desc, **options), features

    def _logits(
        self,
        params: ParamDict,
        features: Callable[[ParamDict, Tensor], Tensor],
        x: Tensor,
        desc: TaskDescription,
    ) -> Tensor:
        """Logits of ``x`` under (adapted) ``params``: through the head, or the features without one."""
        return adapted_logits(features, params, x, desc, head=self.head_mode != "none")

    def _task_loss(
        self,
        meta: ParamDict,
        head: ParamDict,
        xs: Tensor,
        ys: Tensor,
        xq: Tensor,
        yq: Tensor,
        desc: TaskDescription,
        use_func: bool = False,
    ) -> Tensor:
        """The task's query loss after adaptation, by the functional path (`maml_task_loss`)."""
        features, params, options = self._adaptation(meta, head, training=True, use_func=use_func)
        return maml_task_loss(features, params, (xs, ys), (xq, yq), desc, **options)

    # ------------------------------------------------------------------ public API

    def meta_loss(self, tasks: Sequence[Task] | Task) -> Tensor:
        """Mean query loss over ``tasks`` after adaptation; call ``.backward()`` on it.

        ``tasks`` is a list of tasks (of any kinds and class counts) or one collated batch. The whole
        meta-batch's graph is kept until the backward pass; [`meta_backward()`][MAML.meta_backward] needs the
        memory of one task instead.
        """
        tasks = as_task_list(tasks)
        check_unwrapped(self)
        meta = self._meta()
        like = self._like()
        first = _first_slot(len(tasks))
        losses = []
        for i, task in enumerate(tasks):
            xs, ys, xq, yq, desc = task_tensors(task)
            head = self.new_head(desc, like, first + i)
            with naming_task(task):
                losses.append(self._task_loss(meta, head, xs, ys, xq, yq, desc))
        self._advance_heads()
        return torch.stack(losses).mean()

    def _advance_heads(self) -> None:
        if self.head_mode == "per_task" and self.head_init == "kaiming":
            with torch.no_grad():
                self.head_step += 1

    def forward(self, tasks: Sequence[Task] | Task) -> Tensor:
        """Same as [`meta_loss()`][MAML.meta_loss]."""
        return self.meta_loss(tasks)

    def meta_backward(self, tasks: Sequence[Task] | Task, *, sync: bool = True) -> float:
        """Accumulate the gradient of [`meta_loss()`][MAML.meta_loss] into ``.grad``,
        one task at a time.

        Each task's graph is freed after its backward pass, so memory is that of one
        task. Gradients add to existing ``.grad`` (zero them first, as with ``backward``).
        Equally shaped tasks of one description may run in one ``vmap`` instead
        (``batching``; see `torchcross.learners.batching`).

        Under ``torch.distributed`` (an initialised process group of several ranks, e.g. ``torchrun``) the
        gradients are then averaged over ranks in one all-reduce
        ([`all_reduce_gradients()`][all_reduce_gradients]), so every rank
        holds the meta-gradient of the global meta-batch; ``sync=False`` skips that (e.g. to accumulate
        several calls and sync on the last).

        Returns:
            This rank's meta-loss value.

        Raises:
            TypeError: the backbone (or this module) is wrapped in ``DistributedDataParallel``.
        """
        tasks = as_task_list(tasks)
        check_unwrapped(self)
        value = self._meta_backward(tasks)
        self._advance_heads()
        if sync:
            all_reduce_gradients(self)
        return value

    def _meta_backward(self, tasks: list[Task]) -> float:
        device = self._like().device
        mode = self._chooser.choose(self.batching, tasks, device)
        if mode == "calibrate":
            run: dict[str, Callable[[], float]] = {
                "loop": functools.partial(self._loop_backward, tasks),
                "vmap": functools.partial(self._vmap_backward, tasks),
            }
            return self._chooser.calibrate(tasks, list(self._named_meta().values()), run, device)
        if mode == "vmap":
            return self._vmap_backward(tasks)
        return self._loop_backward(tasks)

    def _loop_backward(self, tasks: list[Task]) -> float:
        meta = self._meta()
        like = self._like()
        first = _first_slot(len(tasks))
        total = torch.zeros((), dtype=like.dtype, device=like.device)
        for i, task in enumerate(tasks):
            xs, ys, xq, yq, desc = task_tensors(task)
            head = self.new_head(desc, like, first + i)
            with naming_task(task):
                task_loss = self._task_loss(meta, head, xs, ys, xq, yq, desc) / len(tasks)
                task_loss.backward()
            total += task_loss.detach()
        return float(total)

    def _named_meta(self) -> dict[str, Tensor]:
        named = self._module_params(trainable_only=True)
        if self.inner_lrs is not None:
            rates = cast("Mapping[str, Tensor]", self.inner_lrs)
            named = with_meta_sgd_rates(named, rates, [*named, *self._scalar_rate_names()])
        return named

    def _vmap_backward(self, tasks: list[Task]) -> float:
        like = self._like()
        first = _first_slot(len(tasks))
        heads = [self.new_head(t.description, like, first + i) for i, t in enumerate(tasks)]
        meta = self._meta(detach=True)
        with naming_task(tasks[0]):  # one description and one shape for all
            grads, value = _batching.vmap_meta_gradients(
                self._task_loss,
                meta,
                heads,
                tasks,
                chunk_size=_batching.resolve_chunk_size(self.vmap_chunk_size, like.device),
            )
        for k, p in self._named_meta().items():
            p.grad = grads[k] if p.grad is None else p.grad + grads[k]
        return value

    def adapted_logits(self, task: Task, *, training: bool = True, slot: int = -1) -> tuple[Tensor, Tensor]:
        """Support and query logits after adapting on ``task``'s support set.

        With ``training=True`` (``num_inner_steps``, differentiable inner loop) the query logits carry the
        graph back to the meta-parameters, for training loops that need per-task outputs (e.g. to log
        metrics); [`meta_backward()`][MAML.meta_backward] is the memory-lean way to
        train. With ``training=False`` it adapts like [`predict()`][MAML.predict] and
        both are detached. The support logits are always detached. ``slot``: as in
        [`new_head()`][MAML.new_head].

        Examples:
            >>> import torch
            >>> from torchcross.learners.backbones import mlp
            >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
            >>> task = Task(
            ...     (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])),
            ...     (torch.randn(2, 3), torch.tensor([1, 0])),
            ...     d,
            ... )
            >>> from torchcross.learners.policies import InnerLoop
            >>> maml = MAML(mlp(3, (4,)), 4, inner=InnerLoop(lr=0.1, steps=1))
            >>> support, query = maml.adapted_logits(task)
            >>> support.shape, query.shape, query.requires_grad
            (torch.Size([4, 1]), torch.Size([2, 1]), True)
        """
        task = check_task(task)
        xs, ys, xq, _, desc = task_tensors(task)
        with torch.inference_mode(False), torch.enable_grad(), naming_task(task):
            meta = self._meta(detach=not training)
            params, features = self._adapt(
                meta, self.new_head(desc, self._like(), slot), xs, ys, desc, training=training
            )
            query = self._logits(params, features, xq, desc)
            with torch.no_grad():
                support = self._logits(params, features, xs, desc)
        return support.detach(), query if training else query.detach()

    @torch.inference_mode(False)
    def adapt(self, task: Task) -> ParamDict:
        """The adapted parameters for ``task``, detached: ``"backbone.*"`` and ``"head.*"`` (if any).

        Uses ``eval_num_inner_steps`` plain inner steps and never changes this module.
        """
        task = check_task(task)
        xs, ys, _, _, desc = task_tensors(task)
        with torch.enable_grad(), naming_task(task):
            params, _ = self._adapt(
                self._meta(detach=True), self.new_head(desc, self._like()), xs, ys, desc, training=False
            )
        return params

    @torch.inference_mode(False)
    def predict(self, task: Task) -> Tensor:
        """Query logits ``(N_query, num_outputs)`` after adapting on ``task``'s support set.

        Runs ``eval_num_inner_steps`` plain (non-differentiable) inner steps on copies of
        the meta-parameters: weights and buffers (BatchNorm running statistics included)
        are left bit-identical. Works under ``torch.no_grad`` and ``torch.inference_mode``.
        """
        task = check_task(task)
        xs, ys, xq, _, desc = task_tensors(task)
        meta = self._meta(detach=True)
        with torch.enable_grad(), naming_task(task):
            params, features = self._adapt(
                meta, self.new_head(desc, self._like()), xs, ys, desc, training=False
            )
            logits = self._logits(params, features, xq, desc)
        return logits.detach()


def _inner_loop(inner: InnerLoop | None, legacy: dict[str, Any]) -> InnerLoop:
    """``inner``, or the [`InnerLoop`][InnerLoop] of the older keywords."""
    if inner is None:
        return inner_loop_from_keywords(legacy)
    if not isinstance(inner, InnerLoop):
        raise TypeError(f"inner must be an InnerLoop(lr=..., steps=...), got {type(inner).__name__}")
    if legacy:
        raise TypeError(
            f"inner=InnerLoop(...) replaces {', '.join(sorted(legacy))}=: pass them as InnerLoop fields "
            f"({', '.join(INNER_LOOP_KEYWORDS[k] for k in sorted(legacy))})"
        )
    return inner


def _first_slot(num_tasks: int) -> int:
    """The global position of this rank's first task: ranks hold consecutive equal shares."""
    rank, _ = rank_and_world_size()
    return rank * num_tasks


class CrossDomainMAML(MAML):
    """[`MAML`][MAML] under the name torchcross 0.0.6 used for mixed-kind
    meta-batches.

    `MAML` already gives every task its own head, so the two are the same.
    """
