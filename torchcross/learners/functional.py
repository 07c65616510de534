"""The pure functional core of the learners, on ``torch.func``: one import for all of it.

Models run from parameter dicts ([`forward()`][torchcross.learners.maml.MAML.forward],
``torch.func.functional_call``); adaptation is a function from parameters to parameters
([`inner_loop()`][torchcross.learners.functional.inner_loop]); nothing here writes to a module's parameters or
buffers. The learner classes ([`MAML`][torchcross.learners.maml.MAML],
[`FineTuner`][torchcross.learners.finetuner.FineTuner], [`ProtoNet`][torchcross.learners.protonet.ProtoNet])
are thin shells over these functions.

The pieces live in modules named for what they do; this module gathers them:

* `stateless`: `forward()`,
  [`task_buffers()`][torchcross.learners.functional.task_buffers] and the
  BatchNorm policies;
* `inner_loop`:
  `inner_loop()` (second order, first order,
  plain fine-tuning), [`maml_query_loss()`][torchcross.learners.functional.maml_query_loss],
  [`finetune()`][torchcross.learners.functional.finetune];
* [`transforms`][torchcross.learners.transforms]: the one optimiser abstraction, the
  ``GradientTransformation`` (``update(updates, state, params)``), with
  [`sgd()`][sgd], [`adam()`][adam] and the
  pieces they are chained from ([`inner_optimizers`][torchcross.learners.inner_optimizers] keeps the older
  ``SGD`` and ``Adam`` objects working);
* [`task_adaptation`][torchcross.learners.task_adaptation]:
  [`adapt_backbone_and_head()`][adapt_backbone_and_head], MAML's
  inner loop over a backbone and a task head, with the zero-head shortcuts, and
  [`maml_task_loss()`][maml_task_loss], the task loss
  `MAML` trains on;
* [`meta_sgd`][torchcross.learners.meta_sgd]: learned inner learning rates in a flat
  parameter dict;
* [`prototypes()`][torchcross.learners.functional.prototypes] and
  [`prototype_logits()`][torchcross.learners.functional.prototype_logits]: the ProtoNet core.

Examples:
    >>> import torch
    >>> w = torch.tensor([2.0], requires_grad=True)
    >>> adapted = inner_loop(lambda p: (p["w"] ** 2).sum(), {"w": w}, sgd(0.25), num_steps=1).params
    >>> adapted["w"]  # 2 - 0.25 * 4, still a function of w
    tensor([1.], grad_fn=<AddBackward0>)
    >>> torch.autograd.grad(adapted["w"].sum(), w)[0]  # d/dw (w - 0.25 * 2w) = 0.5
    tensor([0.5000])
"""

from __future__ import annotations

from torchcross.learners._prototypes import DISTANCES, prototype_logits, prototypes
from torchcross.learners.inner_loop import InnerLoopResult, finetune, inner_loop, maml_query_loss
from torchcross.learners.inner_optimizers import (
    SGD,
    Adam,
    AdamState,
    InnerOptimizer,
    SGDState,
    SkipsZeroGradients,
    TransformOptimizer,
    as_transformation,
)
from torchcross.learners.meta_sgd import (
    META_SGD_PREFIX,
    init_meta_sgd_rates,
    meta_sgd_key,
    split_meta_sgd_rates,
    with_meta_sgd_rates,
)
from torchcross.learners.stateless import BATCH_NORM_POLICIES, forward, task_buffers
from torchcross.learners.task_adaptation import HEAD_NAMES, adapt_backbone_and_head, maml_task_loss
from torchcross.learners.transforms import (
    EmptyState,
    GradientTransformation,
    ScaleByAdamState,
    TraceState,
    adam,
    add_decayed_weights,
    apply_updates,
    chain,
    scale_by_adam,
    scale_by_learning_rate,
    sgd,
    trace,
)

__all__ = [
    "BATCH_NORM_POLICIES",
    "DISTANCES",
    "HEAD_NAMES",
    "META_SGD_PREFIX",
    "SGD",
    "Adam",
    "AdamState",
    "EmptyState",
    "GradientTransformation",
    "InnerLoopResult",
    "InnerOptimizer",
    "SGDState",
    "ScaleByAdamState",
    "SkipsZeroGradients",
    "TraceState",
    "TransformOptimizer",
    "adam",
    "adapt_backbone_and_head",
    "add_decayed_weights",
    "as_transformation",
    "apply_updates",
    "chain",
    "finetune",
    "forward",
    "init_meta_sgd_rates",
    "inner_loop",
    "maml_query_loss",
    "maml_task_loss",
    "prototype_logits",
    "prototypes",
    "meta_sgd_key",
    "scale_by_adam",
    "scale_by_learning_rate",
    "sgd",
    "split_meta_sgd_rates",
    "task_buffers",
    "trace",
    "with_meta_sgd_rates",
]
