"""torchcross 0.0.6's models (``torchcross.models``), over the torchcross learners.

Plain ``nn.Module`` models with 0.0.6's names and constructor signatures: `SimpleClassifier`,
`SimpleCrossDomainClassifier` (on [`MultiTaskPretrainer`][torchcross.learners.multitask.MultiTaskPretrainer]),
[`MAML`][torchcross.learners.maml.MAML] and [`CrossDomainMAML`][torchcross.learners.maml.CrossDomainMAML] (on
`MAML`), [`ProtoNet`][torchcross.learners.protonet.ProtoNet] and
`SimpleCrossDomainProtoNet` (on `ProtoNet`). Their Lightning
versions, which 0.0.6 scripts train with a ``Trainer``, are in `torchcross.models.lightning` (needs the
``lightning`` extra).

New code uses `torchcross.learners` and `torchcross.lightning` directly.

Names are imported lazily on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.compat.models.cross_domain import CrossDomainModel as CrossDomainModel
    from torchcross.compat.models.cross_domain import (
        SimpleCrossDomainClassifier as SimpleCrossDomainClassifier,
    )
    from torchcross.compat.models.episodic import EpisodicModel as EpisodicModel
    from torchcross.compat.models.maml import MAML as MAML
    from torchcross.compat.models.maml import CrossDomainMAML as CrossDomainMAML
    from torchcross.compat.models.protonet import ProtoNet as ProtoNet
    from torchcross.compat.models.protonet import SimpleCrossDomainProtoNet as SimpleCrossDomainProtoNet
    from torchcross.compat.models.simple import SimpleClassifier as SimpleClassifier

_EXPORTS: dict[str, str] = {
    "CrossDomainModel": "cross_domain",
    "SimpleCrossDomainClassifier": "cross_domain",
    "EpisodicModel": "episodic",
    "MAML": "maml",
    "CrossDomainMAML": "maml",
    "ProtoNet": "protonet",
    "SimpleCrossDomainProtoNet": "protonet",
    "SimpleClassifier": "simple",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
