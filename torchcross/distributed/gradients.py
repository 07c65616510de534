"""Average gradients and buffers over ranks in one collective call per dtype and device.

Examples:
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> net(torch.ones(1, 2)).sum().backward()
    >>> all_reduce_gradients(net)  # no process group: nothing to do, no collective call
    0
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from torchcross.distributed.replicas import check_replicas, module_layout
from torchcross.distributed.seeds import is_distributed

__all__ = ["all_reduce_gradients", "check_unwrapped"]

# module -> (process group, layout) that check_replicas last passed for it
_CHECKED: weakref.WeakKeyDictionary[nn.Module, tuple[int, tuple[object, ...]]] = weakref.WeakKeyDictionary()


def check_unwrapped(module: nn.Module) -> None:
    """Raise if ``module`` or a sub-module is a ``DistributedDataParallel`` wrapper.

    torchcross learners call their backbones functionally (``torch.func.functional_call``),
    which bypasses DDP's forward and therefore its gradient hooks; they synchronise their
    own gradients with [`all_reduce_gradients()`][all_reduce_gradients]
    instead.

    Raises:
        TypeError: a sub-module is wrapped in ``DistributedDataParallel``.

    Examples:
        >>> check_unwrapped(torch.nn.Linear(2, 1))  # fine: nothing is wrapped
    """
    for name, sub in module.named_modules():
        if isinstance(sub, nn.parallel.DistributedDataParallel):
            where = f"sub-module {name!r}" if name else "the module"
            raise TypeError(
                f"{where} of {type(module).__name__} is wrapped in DistributedDataParallel, whose "
                "gradient hooks never see torchcross's functional backbone calls (ranks would drift "
                "apart); pass the unwrapped module: meta_backward / training_step all-reduce the "
                "gradients once per step themselves (see torchcross.distributed)"
            )


def _groups(tensors: Iterable[Tensor]) -> dict[tuple[torch.dtype, torch.device], list[Tensor]]:
    out: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for t in tensors:
        out.setdefault((t.dtype, t.device), []).append(t)
    return out


def all_reduce_gradients(
    module: nn.Module,
    *,
    buffers: bool = True,
    process_group: dist.ProcessGroup | None = None,
) -> int:
    """Average ``.grad`` of ``module``'s trainable parameters over the ranks of ``process_group``.

    The result equals one process that saw every rank's batch at once, when each rank's loss is
    a mean over a batch of the same size. A parameter without a gradient on some ranks (a
    task head only some ranks used) counts as zero there; one without a gradient on every rank
    keeps ``.grad = None``, as in a single process. With ``buffers``, floating-point buffers
    (BatchNorm running statistics) are averaged too, so every rank saves and uses the same ones.

    Gradients, presence flags and buffers travel in one flat tensor: one ``all_reduce`` per
    (dtype, device) group, usually one per step. Without an initialised process group of more
    than one rank this does nothing.

    The first call for a module (and the first after its parameters or buffers were added,
    removed or reshaped) first runs
    [`check_replicas()`][check_replicas]: every rank must
    hold the same layout and bit-identical parameters, else every rank raises a
    ``ValueError`` naming the rank and the parameter (instead of aborting in the all-reduce
    or training models that drift apart).

    Args:
        module: the learner (its sub-modules must not be DDP-wrapped).
        buffers: also average floating-point buffers.
        process_group: the group to average over (default: the global group).

    Returns:
        The number of ``all_reduce`` calls made (0 without a process group).

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or contains a DDP wrapper.
        ValueError: a gradient is sparse, or (first call) the ranks' modules differ in
            layout or parameter values (seed every rank alike, or call
            [`broadcast_parameters()`][torchcross.distributed.replicas.broadcast_parameters]).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    check_unwrapped(module)
    if not is_distributed(process_group):
        return 0
    world = dist.get_world_size(process_group)
    params: list[Tensor] = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            raise ValueError("all_reduce_gradients does not support sparse gradients; use dense ones")
    group = dist.group.WORLD if process_group is None else process_group
    layout = module_layout(module)
    if _CHECKED.get(module) != (id(group), layout):
        check_replicas(module, process_group=process_group)
        _CHECKED[module] = (id(group), layout)
    bufs = [b for b in module.buffers() if b.is_floating_point()] if buffers else []
    calls = 0
    param_groups, buffer_groups = _groups(params), _groups(bufs)
    for key in sorted(set(param_groups) | set(buffer_groups), key=str):  # the same order on every rank
        dtype, device = key
        group_params, group_bufs = param_groups.get(key, []), buffer_groups.get(key, [])
        pieces = [torch.zeros_like(p).flatten() if p.grad is None else p.grad.flatten() for p in group_params]
        flags = torch.tensor([p.grad is not None for p in group_params], dtype=dtype, device=device)
        pieces += [flags, *(b.detach().flatten() for b in group_bufs)]
        flat = torch.cat(pieces)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=process_group)
        calls += 1
        flat /= world
        offset = 0
        views = []
        for p in group_params:
            views.append(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        present = flat[offset : offset + len(group_params)]
        offset += len(group_params)
        for p, view, flag in zip(group_params, views, present.tolist()):
            if flag == 0:
                p.grad = None
            elif p.grad is None:
                p.grad = view.clone()
            else:
                p.grad.copy_(view)
        with torch.no_grad():
            for b in group_bufs:
                b.copy_(flat[offset : offset + b.numel()].view_as(b))
                offset += b.numel()
    return calls
