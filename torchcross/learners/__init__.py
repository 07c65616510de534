"""Learners: adapt to a task's support set, predict its query set.

A pure functional core ([`torchcross.learners.functional`][torchcross.learners.functional]: ``inner_loop``,
``maml_query_loss``, ``finetune``, ``adapt_backbone_and_head``, ``prototypes``; inner
optimisers chained from the gradient transformations of
[`torchcross.learners.transforms`][torchcross.learners.transforms]) and thin classes over it:

* [`MAML`][torchcross.learners.maml.MAML] / [`CrossDomainMAML`][torchcross.learners.maml.CrossDomainMAML]:
  meta-learning across task kinds, with a
  fresh (zero-initialised) head per task, or a meta-learned head for tasks of one width
  (``head="learned"``, classic MAML); second order, first order, ANIL, Meta-SGD;
* [`FineTuner`][torchcross.learners.finetuner.FineTuner]: fine-tune a new (or given) head (linear probe) or
  head and backbone per episode;
* [`ProtoNet`][torchcross.learners.protonet.ProtoNet]: prototypical networks for all four task kinds;
* [`MultiTaskPretrainer`][torchcross.learners.multitask.MultiTaskPretrainer]: a shared backbone with one head
  per source task (mm-PT).

Names are imported lazily on first use.
"""

from __future__ import annotations

from torchcross._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "MAML": "maml",
    "CrossDomainMAML": "maml",
    "FineTuner": "finetuner",
    "ProtoNet": "protonet",
    "MultiTaskPretrainer": "multitask",
    "SGD": "inner_optimizers",
    "Adam": "inner_optimizers",
    "Conv4": "backbones",
    "MLP": "backbones",
    "conv4": "backbones",
    "mlp": "backbones",
    "inner_loop": "functional",
    "maml_query_loss": "functional",
    "finetune": "functional",
    "prototypes": "functional",
    "prototype_logits": "functional",
    "task_buffers": "functional",
    "BackboneInputError": "stateless",
    "DivergenceRule": "divergence",
    "DivergenceWarning": "divergence",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
