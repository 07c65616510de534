"""torchcross 0.0.6 behind a fence: everything that exists only so that code written for 0.0.6 keeps running.

* `torchcross.compat.models` and `torchcross.compat.models.lightning`: 0.0.6's models and
  LightningModules, over `torchcross.learners` and `torchcross.lightning`;
* `torchcross.compat.cd`: 0.0.6's heads, losses, activations and metrics, over `torchcross.nn` and
  [`torchcross.evaluation.metrics`][torchcross.evaluation.metrics];
* `torchcross.compat.utils`: 0.0.6's ``to_numpy``, collate functions and ``Expand`` (and the thread policy
  it has been served with since);
* `torchcross.compat.data`: 0.0.6's re-export modules ``task``, ``task_source`` and ``dataset``.

The 0.0.6 import paths (``torchcross.models``, ``torchcross.cd``, ``torchcross.utils``,
``torchcross.data.task``, ``torchcross.data.task_source``, ``torchcross.data.dataset`` and every
module under them) are one-line aliases of these modules, so ``from torchcross.models.lightning import
MAML`` and pickles naming ``torchcross.data.task.Task`` keep working. Nothing outside this package and
those aliases imports it (``tests/test_layout.py`` enforces it): new code uses the core packages.
"""

from __future__ import annotations

__all__: list[str] = []
