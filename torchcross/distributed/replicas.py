"""Every rank holds the same model: check it, or make it so by broadcasting rank 0's.

Ranks that start from different weights train different models, even with averaged
gradients; ranks whose models have other shapes cannot average at all (gloo aborts the
process, NCCL hangs or reads garbage). `check_replicas()` compares the ranks' modules
in one small collective call: the names, shapes and dtypes of the parameters and
buffers, and a hash of every parameter's bytes, so it names the rank and the parameter
that differ. [`all_reduce_gradients()`][torchcross.distributed.gradients.all_reduce_gradients]
runs it before its first all-reduce of a module (and again if the module's parameters
change). `broadcast_parameters()` copies rank 0's parameters and buffers to every rank.

Examples:
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> broadcast_parameters(net)  # no process group: nothing to do, no collective call
    0
    >>> check_replicas(net)  # one process: nothing to compare
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from torchcross.distributed.seeds import is_distributed

__all__ = ["broadcast_parameters", "check_replicas", "module_layout"]

_FIX = (
    "seed every rank alike before building the model (torch.manual_seed(seed) on every rank) or call "
    "torchcross.distributed.broadcast_parameters(model) on every rank once, after building or loading it "
    "and before the first step"
)

Layout = tuple[tuple[str, str, tuple[int, ...], str, str, bool], ...]


def module_layout(module: nn.Module) -> Layout:
    """``(kind, name, shape, dtype, device type, requires_grad)`` of every parameter and buffer.

    What must be equal on every rank for gradients and buffers to be averaged (a cheap,
    local value; `check_replicas()` compares it across ranks).

    Examples:
        >>> module_layout(torch.nn.Linear(2, 1))[0]
        ('parameter', 'weight', (1, 2), 'torch.float32', 'cpu', True)
    """
    params = tuple(
        ("parameter", n, tuple(p.shape), str(p.dtype), p.device.type, p.requires_grad)
        for n, p in module.named_parameters()
    )
    bufs = tuple(
        ("buffer", n, tuple(b.shape), str(b.dtype), b.device.type, False) for n, b in module.named_buffers()
    )
    return params + bufs


def _digest(t: Tensor) -> str:
    data = t.detach()
    if data.is_sparse:
        data = data.to_dense()
    data = data.resolve_conj().resolve_neg().reshape(-1).contiguous().cpu()
    # numpy types the buffer protocol from Python 3.12
    return hashlib.blake2b(data.view(torch.uint8).numpy(), digest_size=8).hexdigest()  # type: ignore[arg-type]


def _global_rank(process_group: dist.ProcessGroup | None, rank: int) -> int:
    return rank if process_group is None else dist.get_global_rank(process_group, rank)


def _shape_text(entry: tuple[Any, ...]) -> str:
    kind, _, shape, dtype, device, requires_grad = entry
    frozen = "" if requires_grad or kind == "buffer" else ", frozen"
    return f"shape {shape}, {dtype} on {device}{frozen}"


def _layout_difference(mine: Layout, theirs: Layout, rank: int, what: str) -> str | None:
    """How ``theirs`` (rank ``rank``) differs from ``mine`` (rank 0), or ``None`` if they are equal."""
    if mine == theirs:
        return None
    names0 = {(e[0], e[1]): e for e in mine}
    names1 = {(e[0], e[1]): e for e in theirs}
    for key, entry in names0.items():
        other = names1.get(key)
        if other is None:
            return f"{key[0]} {key[1]!r} of rank 0's {what} is missing on rank {rank}"
        if other != entry:
            return (
                f"{key[0]} {key[1]!r} has {_shape_text(entry)} on rank 0 but {_shape_text(other)} "
                f"on rank {rank}"
            )
    extra = next(key for key in names1 if key not in names0) if len(names1) > len(names0) else None
    if extra is not None:
        return f"rank {rank}'s {what} has {extra[0]} {extra[1]!r}, which rank 0's lacks"
    return f"the {what}'s parameters and buffers are registered in another order on rank {rank}"


def _gathered(value: Any, process_group: dist.ProcessGroup | None) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size(process_group)
    dist.all_gather_object(out, value, group=process_group)
    return out


def _raise_on_other_layouts(
    layouts: list[Layout], process_group: dist.ProcessGroup | None, what: str
) -> None:
    for r, layout in enumerate(layouts[1:], start=1):
        difference = _layout_difference(layouts[0], layout, _global_rank(process_group, r), what)
        if difference is not None:
            raise ValueError(
                f"the ranks hold different models: {difference}; build the same model (the same layers, "
                "widths and dtypes, on the same kind of device) on every rank"
            )


def check_replicas(module: nn.Module, *, process_group: dist.ProcessGroup | None = None) -> None:
    """Raise on every rank unless all ranks hold the same ``module``, bit for bit.

    Compared: the names, shapes, dtypes and device types of all parameters and buffers,
    and the bytes of every parameter (a hash of each). Buffer values are not compared
    ([`all_reduce_gradients()`][torchcross.distributed.gradients.all_reduce_gradients]
    averages the floating-point ones; counters may differ). One ``all_gather_object``
    of a few bytes per tensor; nothing without a process group of several ranks.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
        ValueError: the ranks' modules differ in layout or in parameter values (on every
            rank, naming the first rank and parameter that differ and what to do).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if not is_distributed(process_group):
        return
    what = type(module).__name__
    digests = tuple(_digest(p) for _, p in module.named_parameters())
    gathered = _gathered((module_layout(module), digests), process_group)
    _raise_on_other_layouts([layout for layout, _ in gathered], process_group, what)
    names = [n for n, _ in module.named_parameters()]
    for r, (_, theirs) in enumerate(gathered[1:], start=1):
        differ = [n for n, a, b in zip(names, gathered[0][1], theirs) if a != b]
        if differ:
            raise ValueError(
                f"the ranks start from different weights: rank {_global_rank(process_group, r)}'s "
                f"{what} differs from rank 0's in {len(differ)} of {len(names)} parameters (first: "
                f"{differ[0]!r}), so the ranks would train different models; {_FIX}"
            )


def broadcast_parameters(
    module: nn.Module, *, buffers: bool = True, process_group: dist.ProcessGroup | None = None
) -> int:
    """Copy rank 0's parameters (and buffers) into ``module`` on every rank, in place.

    Call it on every rank once after building (or loading) the model and before
    training, unless every rank builds it from the same seed. The ranks' layouts are
    compared first, so a rank with another model raises a ``ValueError`` instead of
    breaking the collective call. One ``broadcast`` per (dtype, device) group.

    Args:
        module: the model (or learner) every rank trains.
        buffers: also copy the buffers (BatchNorm running statistics, counters).
        process_group: the group to copy within (default: the global group); its first rank
            is the source.

    Returns:
        The number of ``broadcast`` calls made (0 without a process group of several ranks).

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
        ValueError: the ranks' modules have different layouts (naming the rank and tensor).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if not is_distributed(process_group):
        return 0
    layouts = _gathered(module_layout(module), process_group)
    _raise_on_other_layouts(layouts, process_group, type(module).__name__)
    tensors = [p.data for p in module.parameters()] + (list(module.buffers()) if buffers else [])
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    src = _global_rank(process_group, 0)
    calls = 0
    with torch.no_grad():
        for key in sorted(groups, key=str):  # the same order on every rank
            group = groups[key]
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.broadcast(flat, src=src, group=process_group)
            calls += 1
            offset = 0
            for t in group:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
    return calls
