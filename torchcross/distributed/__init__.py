"""Training on many processes (``torch.distributed``, ``torchrun``): one all-reduce per step.

torchcross learners synchronise themselves instead of being wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`: :meth:`MAML.meta_backward
<torchcross.learners.MAML.meta_backward>`, :meth:`ProtoNet.meta_backward
<torchcross.learners.ProtoNet.meta_backward>` and :meth:`MultiTaskPretrainer.training_step
<torchcross.learners.MultiTaskPretrainer.training_step>` end with
:func:`all_reduce_gradients` when a process group is initialised, so the single-process loop
runs unchanged under ``torchrun``. Learners that hold a DDP-wrapped sub-module raise
(:func:`check_unwrapped`), because functional calls bypass DDP's hooks.

* :func:`all_reduce_gradients`: average gradients (and floating-point buffers such as
  BatchNorm running statistics) over ranks in one collective call;
* :func:`shared_seed`: a seed that every rank agrees on (rank 0's, broadcast);
* :func:`derived_seed`: a seed that is a pure function of integer keys, e.g. ``(seed, step, slot)``;
* :func:`rank_and_world_size`, :func:`is_distributed`: this process's place in the group.

Names are imported lazily on first use.
"""

from __future__ import annotations

from torchcross._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "all_reduce_gradients": "gradients",
    "check_unwrapped": "gradients",
    "derived_seed": "seeds",
    "shared_seed": "seeds",
    "is_distributed": "seeds",
    "rank_and_world_size": "seeds",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
