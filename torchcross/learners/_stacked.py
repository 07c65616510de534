"""Many episodes fine-tuned at once: stacked parameters, chunks that shrink when memory runs out.

Private helpers of [`FineTuner.predict_many()`][torchcross.learners.finetuner.FineTuner.predict_many]:
`fit_stacked()` takes the steps of ``E`` fine-tuning runs together (parameters with a leading episode
dimension, the gradient of the sum of the per-episode losses: each slice gets its own episode's
gradient), and `ChunkSizer` runs episodes in chunks, halving a chunk that does not fit in memory and
remembering the size that did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from torchcross.learners._checkpoint import grads_or_zeros
from torchcross.learners.inner_loop import transform_step
from torchcross.learners.transforms import GradientTransformation

__all__ = ["ChunkSizer", "fit_stacked", "is_out_of_memory", "stack_dicts"]

ParamDict = dict[str, Tensor]
T = TypeVar("T")

# what torch's allocators say when an allocation fails (CUDA raises torch.OutOfMemoryError; the CPU
# allocator a RuntimeError "DefaultCPUAllocator: can't allocate memory: you tried to allocate ...")
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "DefaultCPUAllocator")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (of any device).

    Examples:
        >>> is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ..."))
        True
        >>> is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
        False
    """
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OUT_OF_MEMORY)


class ChunkSizer:
    """Runs items in chunks as large as memory allows; a chunk that does not fit is halved and retried.

    ``limit`` (``None``: no limit yet) is the largest chunk known to fit; it only shrinks.

    Examples:
        >>> sizer = ChunkSizer()
        >>> def run(chunk):
        ...     if len(chunk) > 3:
        ...         raise RuntimeError("CUDA out of memory (a test)")
        ...     return [c * 10 for c in chunk]
        >>> sizer.run(list(range(7)), run), sizer.limit
        ([0, 10, 20, 30, 40, 50, 60], 2)
    """

    def __init__(self) -> None:
        self.limit: int | None = None

    def run(self, items: Sequence[Any], fn: Callable[[list[Any]], list[T]]) -> list[T]:
        """``fn`` over consecutive chunks of ``items``, the results concatenated in order.

        Raises:
            RuntimeError: the allocation failure of a chunk of one item (nothing smaller to try), or any
                other error of ``fn``.
        """
        out: list[T] = []
        start = 0
        while start < len(items):
            size = min(len(items) - start, self.limit or len(items))
            try:
                out.extend(fn(list(items[start : start + size])))
            except RuntimeError as exc:
                if not is_out_of_memory(exc) or size == 1:
                    raise
                self.limit = (size + 1) // 2
            else:
                start += size
                continue
            # out of the except clause: the failed chunk's tensors (held by the traceback) are freed
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return out


def stack_dicts(dicts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One dict of the values of ``dicts`` stacked along a new first dimension (``None`` stays ``None``).

    Examples:
        >>> stack_dicts([{"w": torch.zeros(2), "r": None}, {"w": torch.ones(2), "r": None}])["w"].shape
        torch.Size([2, 2])
    """
    return {k: None if dicts[0][k] is None else torch.stack([d[k] for d in dicts]) for k in dicts[0]}


def fit_stacked(
    episode_losses: Callable[[ParamDict], Tensor],
    params: Mapping[str, Tensor],
    transform: GradientTransformation,
    num_steps: int,
) -> tuple[ParamDict, Tensor]:
    """``num_steps`` steps of ``E`` fine-tuning runs at once, without a graph across steps.

    Args:
        episode_losses: stacked parameters ``(E, ...)`` -> the ``(E,)`` support losses.
        params: stacked starting parameters, never modified.
        transform: an element-wise optimiser (``is_elementwise``): each slice is then updated as it
            would be alone.
        num_steps: the steps.

    Returns:
        The fitted parameters (detached) and the ``(E,)`` losses before the first step (empty without steps).

    Examples:
        >>> from torchcross.learners.transforms import sgd
        >>> w = {"w": torch.tensor([[2.0], [4.0]])}  # two episodes, loss w**2 each
        >>> fitted, first = fit_stacked(lambda p: (p["w"] ** 2).sum(1), w, sgd(0.25), 1)
        >>> fitted["w"].flatten().tolist(), first.tolist()
        ([1.0, 2.0], [4.0, 16.0])
    """
    current = {k: v.detach() for k, v in params.items()}
    state = transform.init(current)
    names = list(current)
    first = torch.zeros(0)
    with torch.enable_grad():
        for step in range(num_steps):
            current = {k: v.detach().requires_grad_() for k, v in current.items()}
            losses = episode_losses(current)
            # the sum's gradient: each episode's slice gets exactly its own loss's gradient
            grads = grads_or_zeros(losses.sum(), [current[n] for n in names])
            with torch.no_grad():
                current, state = transform_step(
                    transform, {k: v.detach() for k, v in current.items()}, dict(zip(names, grads)), state
                )
            if step == 0:
                first = losses.detach()
    return current, first
