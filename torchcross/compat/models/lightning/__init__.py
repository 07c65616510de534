"""torchcross 0.0.6's LightningModules (``torchcross.models.lightning``), over the torchcross learners.

``SimpleClassifier``, ``SimpleCrossDomainClassifier``, ``MAML``, ``CrossDomainMAML``, ``ProtoNet``
and ``SimpleCrossDomainProtoNet`` take 0.0.6's constructor arguments and log 0.0.6's keys, so
scripts written for 0.0.6 train, validate and test them with a Lightning ``Trainer`` unchanged:

* classifiers: ``loss/{train,val,test}``, ``accuracy/{...}``, ``AUROC/{...}``;
* episodic models: ``loss/meta{train,val,test}/{support,query}``,
  ``accuracy/meta{...}/{support,query}``, ``AUROC/meta{...}/{support,query}`` (ProtoNet: query only).

Fixed where 0.0.6 was wrong: evaluating an episodic model adapts copies of the meta-learned
weights (they never change) and works under Lightning's default ``inference_mode``; an
``outer_lr_scheduler`` / ``lr_scheduler`` is stepped once per epoch.

Names are imported lazily on first use (they need the ``lightning`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.compat.models.lightning.cross_domain_classifier import (
        SimpleCrossDomainClassifier as SimpleCrossDomainClassifier,
    )
    from torchcross.compat.models.lightning.maml import MAML as MAML
    from torchcross.compat.models.lightning.maml import CrossDomainMAML as CrossDomainMAML
    from torchcross.compat.models.lightning.protonet import ProtoNet as ProtoNet
    from torchcross.compat.models.lightning.protonet import (
        SimpleCrossDomainProtoNet as SimpleCrossDomainProtoNet,
    )
    from torchcross.compat.models.lightning.simple import SimpleClassifier as SimpleClassifier

_EXPORTS: dict[str, str] = {
    "SimpleClassifier": "simple",
    "SimpleCrossDomainClassifier": "cross_domain_classifier",
    "MAML": "maml",
    "CrossDomainMAML": "maml",
    "ProtoNet": "protonet",
    "SimpleCrossDomainProtoNet": "protonet",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
