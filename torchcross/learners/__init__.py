"""Learners: adapt to a task's support set, predict its query set.

A pure functional core (:mod:`torchcross.learners.functional`: ``inner_loop``,
``maml_query_loss``, ``finetune``, ``prototypes``) and thin classes over it:

* :class:`MAML` / :class:`CrossDomainMAML`: meta-learning across task kinds, with a
  fresh (zero-initialised) head per task; second order, first order, ANIL, Meta-SGD;
* :class:`FineTuner`: fine-tune a new head (linear probe) or head and backbone per episode;
* :class:`ProtoNet`: prototypical networks for all four task kinds;
* :class:`MultiTaskPretrainer`: a shared backbone with one head per source task (mm-PT).

Names are imported lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "MAML": "maml",
    "CrossDomainMAML": "maml",
    "FineTuner": "finetune",
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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
