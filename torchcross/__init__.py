"""torchcross: cross-domain few-shot learning and meta-learning for PyTorch.

Subpackages follow the pipeline: `torchcross.data` (tasks, task sources, episodes, interleaving, collation),
`torchcross.datasets` (MedIMeta and other meta-datasets), `torchcross.nn` (what depends on the task kind:
heads, losses), `torchcross.learners` (MAML, fine-tuning, ProtoNets, multi-task pre-training),
[`torchcross.evaluation.metrics`][torchcross.evaluation.metrics] and
[`torchcross.evaluation.episodic`][torchcross.evaluation.episodic].

Subpackages are imported lazily, so ``import torchcross`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = frozenset(
    {
        "tasks",
        "sampling",
        "data",
        "datasets",
        "nn",
        "learners",
        "evaluation",
        "protocol",
        "distributed",
        "lightning",
        "cd",
        "models",
        "utils",
        "cli",
        "compat",
        "threads",
    }
)

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
