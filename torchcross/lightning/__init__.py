"""Lightning modules over the torchcross learners (needs the ``lightning`` extra).

* [`MetaLearningModule`][MetaLearningModule]: meta-training of a learner with
  ``meta_backward``
  ([`MAML`][torchcross.learners.maml.MAML] and its variants,
  [`ProtoNet`][torchcross.learners.protonet.ProtoNet]),
  episodic validation and testing (``val_loss``, ``val_auroc``, ``val_accuracy``);
* [`MultiTaskModule`][MultiTaskModule]: multi-task pre-training
  ([`MultiTaskPretrainer`][torchcross.learners.multitask.MultiTaskPretrainer]);
* [`FineTuningEvaluation`][FineTuningEvaluation]: episodic evaluation with a
  [`FineTuner`][torchcross.learners.finetuner.FineTuner];
* [`EpisodeStream`][EpisodeStream] and
  [`RankMetaBatches`][RankMetaBatches]: a training stream that a resumed
  ``Trainer`` continues exactly, because the modules count the batches they consumed in their checkpoints.

The modules use manual optimisation: the learners all-reduce their gradients once per step
themselves (`torchcross.distributed`), which works under ``Trainer(strategy="ddp")``.
Evaluation steps adapt with gradients enabled, under Lightning's default ``inference_mode``.

Names are imported lazily on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.lightning.modules import FineTuningEvaluation as FineTuningEvaluation
    from torchcross.lightning.modules import MetaLearningModule as MetaLearningModule
    from torchcross.lightning.modules import MultiTaskModule as MultiTaskModule
    from torchcross.lightning.stream import EpisodeStream as EpisodeStream
    from torchcross.lightning.stream import RankMetaBatches as RankMetaBatches

_EXPORTS: dict[str, str] = {
    "MetaLearningModule": "modules",
    "MultiTaskModule": "modules",
    "FineTuningEvaluation": "modules",
    "EpisodeStream": "stream",
    "RankMetaBatches": "stream",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
