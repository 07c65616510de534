"""torchcross 0.0.6's ``torchcross.cd`` names, over `torchcross.nn` and `torchcross.evaluation`.

Code written for torchcross 0.0.6 imports these; new code uses `torchcross.nn`
(heads, losses, probabilities) and [`torchcross.evaluation.metrics`][torchcross.evaluation.metrics] directly.

* `torchcross.cd.activations`: ``get_prob_func``, ``get_log_prob_func``;
* `torchcross.cd.losses`: ``get_loss_func``, ``get_criterion`` and their loss modules;
* [`torchcross.cd.heads`][torchcross.nn.heads]: ``new_classification_head``;
* `torchcross.cd.metrics`: ``Accuracy``, ``AUROC`` (torchmetrics metrics,
  needs the
  ``lightning`` extra), ``get_accuracy_func``, ``get_auroc_func`` and the cross-domain wrappers.

Every function accepts the classes as any mapping, a plain ``dict`` included.
"""

from __future__ import annotations

__all__: list[str] = []
