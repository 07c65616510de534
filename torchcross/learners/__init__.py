"""Learners: adapt to a task's support set, predict its query set.

A pure functional core ([`torchcross.learners.functional`][torchcross.learners.functional]: ``inner_loop``,
``maml_query_loss``, ``maml_task_loss``, ``finetune``, ``adapt_backbone_and_head``, ``prototypes``; one
optimiser abstraction, the ``GradientTransformation``, with ``sgd()`` and ``adam()`` chained from the pieces
of [`torchcross.learners.transforms`][torchcross.learners.transforms]) and thin classes over it, configured
with two shared values, ``InnerLoop`` (how to adapt) and ``HeadPolicy`` (which head)
([`torchcross.learners.policies`][torchcross.learners.policies]):

* [`MAML`][MAML] / [`CrossDomainMAML`][CrossDomainMAML]:
  meta-learning across task kinds, with a
  fresh (zero-initialised) head per task, or a meta-learned head for tasks of one width
  (``HeadPolicy.learned(N)``, classic MAML); second order, first order, ANIL, Meta-SGD;
* [`FineTuner`][FineTuner]: fine-tune a new (or given) head (linear probe) or
  head and backbone per episode;
* [`ProtoNet`][ProtoNet]: prototypical networks for all four task kinds;
* [`MultiTaskPretrainer`][MultiTaskPretrainer]: a shared backbone with one head
  per source task (mm-PT);
* [`ZeroShotClassifier`][ZeroShotClassifier]: CLIP zero-shot from prompts of the task's class
  names, no support set used.

[`mixed_precision()`][mixed_precision] (bf16 autocast) and
[`to_channels_last()`][to_channels_last] apply to any of them
([`torchcross.learners.precision`][torchcross.learners.precision]).

Names are imported lazily on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.learners.backbones import MLP as MLP
    from torchcross.learners.backbones import Conv4 as Conv4
    from torchcross.learners.backbones import conv4 as conv4
    from torchcross.learners.backbones import mlp as mlp
    from torchcross.learners.divergence import DivergenceRule as DivergenceRule
    from torchcross.learners.divergence import DivergenceWarning as DivergenceWarning
    from torchcross.learners.finetuner import FineTuner as FineTuner
    from torchcross.learners.functional import finetune as finetune
    from torchcross.learners.functional import inner_loop as inner_loop
    from torchcross.learners.functional import maml_query_loss as maml_query_loss
    from torchcross.learners.functional import prototype_logits as prototype_logits
    from torchcross.learners.functional import prototypes as prototypes
    from torchcross.learners.functional import task_buffers as task_buffers
    from torchcross.learners.inner_optimizers import SGD as SGD
    from torchcross.learners.inner_optimizers import Adam as Adam
    from torchcross.learners.maml import MAML as MAML
    from torchcross.learners.maml import CrossDomainMAML as CrossDomainMAML
    from torchcross.learners.multitask import MultiTaskPretrainer as MultiTaskPretrainer
    from torchcross.learners.policies import HeadPolicy as HeadPolicy
    from torchcross.learners.policies import InnerLoop as InnerLoop
    from torchcross.learners.precision import check_precision as check_precision
    from torchcross.learners.precision import mixed_precision as mixed_precision
    from torchcross.learners.precision import to_channels_last as to_channels_last
    from torchcross.learners.protonet import ProtoNet as ProtoNet
    from torchcross.learners.stateless import BackboneInputError as BackboneInputError
    from torchcross.learners.transforms import GradientTransformation as GradientTransformation
    from torchcross.learners.transforms import adam as adam
    from torchcross.learners.transforms import chain as chain
    from torchcross.learners.transforms import sgd as sgd
    from torchcross.learners.zero_shot import ZeroShotClassifier as ZeroShotClassifier
    from torchcross.learners.zero_shot import class_prompts as class_prompts
    from torchcross.learners.zero_shot import zero_shot_logits as zero_shot_logits

_EXPORTS: dict[str, str] = {
    "MAML": "maml",
    "CrossDomainMAML": "maml",
    "FineTuner": "finetuner",
    "ProtoNet": "protonet",
    "MultiTaskPretrainer": "multitask",
    "InnerLoop": "policies",
    "HeadPolicy": "policies",
    "GradientTransformation": "transforms",
    "chain": "transforms",
    "sgd": "transforms",
    "adam": "transforms",
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
    "ZeroShotClassifier": "zero_shot",
    "class_prompts": "zero_shot",
    "zero_shot_logits": "zero_shot",
    "check_precision": "precision",
    "mixed_precision": "precision",
    "to_channels_last": "precision",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
