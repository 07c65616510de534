"""Training on many processes (``torch.distributed``, ``torchrun``): one all-reduce per step.

torchcross learners synchronise themselves instead of being wrapped in
`DistributedDataParallel`: `MAML.meta_backward`, `ProtoNet.meta_backward` and
`MultiTaskPretrainer.training_step` end with
[`all_reduce_gradients()`][all_reduce_gradients] when a process group is
initialised, so the single-process loop
runs unchanged under ``torchrun``. Learners that hold a DDP-wrapped sub-module raise
([`check_unwrapped()`][check_unwrapped]), because functional calls bypass
DDP's hooks.

* `all_reduce_gradients()`: average gradients (and
  floating-point buffers such as
  BatchNorm running statistics) over ranks in one collective call;
* [`broadcast_parameters()`][broadcast_parameters]: copy rank 0's
  parameters and buffers to every rank (call it once before training unless every rank builds the
  model from the same seed);
* [`check_replicas()`][check_replicas]: raise, naming the rank and the
  parameter, unless every rank holds the same model (`all_reduce_gradients` runs it on its first call);
* [`shared_seed()`][shared_seed]: a seed that every rank agrees on (rank 0's,
  broadcast);
* [`derived_seed()`][derived_seed]: a seed that is a pure function of integer
  keys, e.g. ``(seed, step, slot)``;
* [`rank_and_world_size()`][rank_and_world_size],
  [`is_distributed()`][is_distributed]: this process's place in the group.

Names are imported lazily on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.distributed.gradients import all_reduce_gradients as all_reduce_gradients
    from torchcross.distributed.gradients import check_unwrapped as check_unwrapped
    from torchcross.distributed.replicas import broadcast_parameters as broadcast_parameters
    from torchcross.distributed.replicas import check_replicas as check_replicas
    from torchcross.distributed.seeds import derived_seed as derived_seed
    from torchcross.distributed.seeds import is_distributed as is_distributed
    from torchcross.distributed.seeds import rank_and_world_size as rank_and_world_size
    from torchcross.distributed.seeds import shared_seed as shared_seed

_EXPORTS: dict[str, str] = {
    "all_reduce_gradients": "gradients",
    "broadcast_parameters": "replicas",
    "check_replicas": "replicas",
    "check_unwrapped": "gradients",
    "derived_seed": "seeds",
    "shared_seed": "seeds",
    "is_distributed": "seeds",
    "rank_and_world_size": "seeds",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
