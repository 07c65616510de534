"""Running a meta-batch task by task, or all tasks at once with ``torch.func.vmap``.

The per-task loop is the exact default. The ``vmap`` path stacks tasks that share one
description and identical tensor shapes and computes every task's meta-gradient in one
batched call, a vector-Jacobian product of the task loss inside ``vmap``
(`vmap_meta_gradients()`; ``vmap_chunk_size`` splits the meta-batch into several such calls, to bound the
memory). (Differentiating outside ``vmap`` -- ``loss.backward()`` on a vmapped loss --
gives wrong second-order gradients through train-mode BatchNorm in torch 2.14, so that
form is never used.) Tests check that both paths give the same meta-gradients.

``batching="auto"`` picks:

* the loop when the tasks differ in description or shape, or there is only one;
* the loop on CPU, where ``vmap`` is slower than the loop and holds the graphs of all the tasks it runs
  together (docs/learners.md has the measurements, from ``benchmarks/maml.py``);
* on other devices, whichever of the two ran faster on the first meta-batch of each
  task signature (both are run once and timed; the faster one is kept). ``vmap`` holds
  every task's graph at once (on an H200, workload A with 16 tasks: 10 GiB against the
  loop's 0.2 GiB, measured with the earlier ``torch.func.grad`` form, which needed about three times the
  memory of the present one on CPU); if it runs out of device memory while being timed, the loop is kept.

Examples:
    >>> BatchingChooser().choose("auto", [], torch.device("cpu"))
    'loop'
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import Tensor

from torchcross._checks import check_int
from torchcross.learners._tasks import signature, stack_tensors
from torchcross.nn import encode_labels
from torchcross.tasks.task import Task

__all__ = [
    "BATCHING_MODES",
    "CPU_VMAP_CHUNK_SIZE",
    "BatchingChooser",
    "resolve_chunk_size",
    "vmap_meta_gradients",
]

BATCHING_MODES = ("auto", "loop", "vmap")
"""The accepted values of a learner's ``batching`` argument."""

CPU_VMAP_CHUNK_SIZE = 2
"""Tasks per ``vmap`` call that ``vmap_chunk_size="auto"`` gives on a CPU (ours, measured): on workloads A,
A-fo and A-nobn of ``benchmarks/maml.py`` (one thread, two runs) chunks of two took 0.71-0.99x the time
of the whole meta-batch of four and 2.1-3.0x the loop's memory instead of 2.9-4.4x."""


def resolve_chunk_size(value: int | str | None, device: torch.device) -> int | None:
    """The tasks per ``vmap`` call for a ``vmap_chunk_size`` setting on ``device``.

    ``"auto"``: [`CPU_VMAP_CHUNK_SIZE`][CPU_VMAP_CHUNK_SIZE] on a CPU, the whole meta-batch (``None``)
    elsewhere, where ``vmap`` gains by running wide; an ``int`` or ``None`` is kept.

    Raises:
        ValueError: a string other than ``"auto"``, or an ``int`` below 1.
        TypeError: anything else.

    Examples:
        >>> resolve_chunk_size("auto", torch.device("cpu")), resolve_chunk_size("auto", torch.device("cuda"))
        (2, None)
        >>> resolve_chunk_size(3, torch.device("cpu"))
        3
    """
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(
                f"vmap_chunk_size must be 'auto', None (the whole meta-batch) or a number of tasks >= 1, "
                f"got {value!r}"
            )
        return CPU_VMAP_CHUNK_SIZE if device.type == "cpu" else None
    return check_int(value, "vmap_chunk_size", 1, allow_none=True, why=" (tasks per vmap call)")


class BatchingChooser:
    """Decides between the per-task loop and ``vmap`` for a meta-batch, remembering measurements."""

    def __init__(self) -> None:
        self.measured: dict[Any, dict[str, float]] = {}

    def choose(self, mode: str, tasks: Sequence[Task], device: torch.device) -> str:
        """``"loop"``, ``"vmap"`` or (``mode="auto"`` on an accelerator, first time) ``"calibrate"``.

        Raises:
            ValueError: ``mode="vmap"`` for tasks that cannot be stacked.
        """
        if mode not in BATCHING_MODES:
            raise ValueError(f"batching must be one of {BATCHING_MODES}, got {mode!r}")
        if mode == "loop" or not tasks:
            return "loop"
        key = signature(tasks)
        if mode == "vmap":
            if key is None:
                raise ValueError(
                    "batching='vmap' needs tasks with one description and identical support/query shapes; "
                    "use batching='loop' or 'auto' for mixed meta-batches"
                )
            return "vmap"
        if key is None or len(tasks) < 2 or device.type == "cpu":
            return "loop"
        times = self.measured.get((key, len(tasks)))
        if times is None:
            return "calibrate"
        return min(times, key=times.__getitem__)

    def calibrate(
        self,
        tasks: Sequence[Task],
        params: Sequence[Tensor],
        run: dict[str, Callable[[], float]],
        device: torch.device,
    ) -> float:
        """Run every path in ``run`` once (each adds the meta-gradient to ``.grad``), time it,
        remember the times for this task signature, and leave ``.grad`` as the fastest path left it.

        Returns:
            The meta-loss value.
        """
        before = [None if p.grad is None else p.grad.clone() for p in params]
        results: dict[str, tuple[float, list[Tensor | None], float]] = {}
        for name, fn in run.items():
            for p, g in zip(params, before):
                p.grad = None if g is None else g.clone()
            _sync(device)
            t0 = time.perf_counter()
            try:
                value = fn()
            except torch.cuda.OutOfMemoryError:
                if name == "loop":
                    raise  # the per-task loop is the baseline: nothing smaller to fall back to
                # the batched path does not fit on this device: never choose it for this signature
                results[name] = (math.inf, [], math.nan)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            _sync(device)
            results[name] = (time.perf_counter() - t0, [p.grad for p in params], value)
        best = min(results, key=lambda n: results[n][0])
        self.measured[(signature(tasks), len(tasks))] = {n: r[0] for n, r in results.items()}
        for p, g in zip(params, results[best][1]):
            p.grad = g
        return results[best][2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def vmap_meta_gradients(
    task_loss: Callable[..., Tensor],
    meta: dict[str, Tensor],
    heads: Sequence[dict[str, Tensor]],
    tasks: Sequence[Task],
    chunk_size: int | None = None,
) -> tuple[dict[str, Tensor], float]:
    """Mean meta-gradient and mean loss of equally shaped tasks of one description, in one ``vmap``.

    ``task_loss(meta, head, xs, ys, xq, yq, description, use_func=True)`` is one task's
    query loss after adaptation; ``meta`` holds detached meta-parameters and ``heads``
    one fresh head per task. ``chunk_size``: tasks per vectorised call (``None``: all at once); memory
    grows with it, as every task of a chunk holds its graph at the same time.

    Each task's meta-gradient is a vector-Jacobian product (``torch.func.vjp``) taken without building a
    graph of the backward pass and freeing the forward graph as it goes; ``torch.func.grad`` would keep
    both (it always differentiates with ``create_graph=True``, so that it can be nested), about three
    times the memory on workload A of ``benchmarks/maml.py``.
    """
    key = signature(tasks)
    if key is None:
        raise ValueError("vmap needs tasks with one description and identical shapes")
    chunk_size = check_int(chunk_size, "vmap_chunk_size", 1, allow_none=True, why=" (tasks per vmap call)")
    desc = tasks[0].description
    for t in tasks:  # validate labels outside the transform, where values can be read
        encode_labels(t.support[1], desc)
        encode_labels(t.query[1], desc)
    xs, ys, xq, yq = stack_tensors(tasks)
    head = {k: torch.stack([h[k] for h in heads]) for k in heads[0]}

    def grad_and_value(
        meta: dict[str, Tensor], head: dict[str, Tensor], xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor
    ) -> tuple[dict[str, Tensor], Tensor]:
        def of_meta(meta: dict[str, Tensor]) -> Tensor:
            return task_loss(meta, head, xs, ys, xq, yq, desc, use_func=True)

        loss, pull = cast("tuple[Tensor, Callable[..., Any]]", torch.func.vjp(of_meta, meta))
        (grads,) = pull(torch.ones_like(loss), retain_graph=False, create_graph=False)
        return grads, loss.detach()

    per_task = torch.func.vmap(grad_and_value, in_dims=(None, 0, 0, 0, 0, 0), chunk_size=chunk_size)
    grads, losses = per_task(meta, head, xs, ys, xq, yq)
    return {k: g.mean(0) for k, g in grads.items()}, float(losses.mean())
