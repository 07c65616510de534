"""torchcross 0.0.6's re-export modules of the data side: `torchcross.compat.data.task`,
`torchcross.compat.data.task_source` and `torchcross.compat.data.dataset` (their 0.0.6 paths,
``torchcross.data.task`` and so on, are aliases of them)."""

from __future__ import annotations

__all__: list[str] = []
