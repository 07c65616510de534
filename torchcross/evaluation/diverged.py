"""Diverged episodes: scored as failures at chance level, or left out, and always counted.

An episode *diverged* when the learner's query logits are not all finite (a fine-tuning or inner
loop that blew up: [`evaluate()`][torchcross.evaluation.episodic.evaluate] records it with
``left_out = "non-finite"`` and NaN metrics). Leaving such episodes out of a mean flatters the method
that diverged: its mean is taken over the episodes where it worked. [`score_diverged()`][score_diverged]
applies one of two rules (`DIVERGED_RULES`) and marks every record with ``diverged`` (true or false):

* ``"chance"``: a diverged episode counts as a failure, with the scores of a prediction that knows
  nothing ([`chance_scores()`][chance_scores]); it stays in the mean and in paired comparisons;
* ``"drop"``: its metrics stay NaN, so it leaves the mean and paired comparisons (and is counted in
  ``n_left_out`` as ``non-finite``), as torchcross did before.

Either way the count is kept (``n_diverged`` of
[`summarize()`][torchcross.evaluation.episodic.summarize]), so no episode is dropped silently.

The chance scores, for an episode with ``C`` classes (labels, for multi-label tasks), are those of
the uniform prediction (every class equally likely, as zero logits give) on a query set with the same
number of examples of each class, as fixed-shot episodes have:

==========  ==========================================================================
metric      chance score
==========  ==========================================================================
AUROC       0.5 (a score that ranks at random)
accuracy    1/C for multi-class and ordinal tasks, 0.5 for binary tasks and for each
            label of a multi-label task (the expected accuracy of a random guess)
loss        ln C for multi-class and ordinal tasks (cross-entropy), ln 2 for binary and
            multi-label tasks (binary cross-entropy)
MAE         ordinal: the mean distance of the grades ``0..C-1`` from the middle grade
            ``(C-1)/2`` (the uniform prediction's expected grade): ``C/4`` for even ``C``,
            ``(C^2-1)/(4C)`` for odd ``C``; NaN for other kinds, as always
QWK         ordinal: 0 (kappa's chance agreement); NaN for other kinds
==========  ==========================================================================

The rule is ours; the paper does not say how its authors treated diverged episodes.

Examples:
    >>> kind = {"task_target": "BINARY_CLASSIFICATION", "n_classes": 2}
    >>> nan = float("nan")
    >>> rows = [{**kind, "auroc": 0.9, "left_out": ""}, {**kind, "auroc": nan, "left_out": "non-finite"}]
    >>> [(r["auroc"], r["diverged"]) for r in score_diverged(rows)]
    [(0.9, False), (0.5, True)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from torchcross.tasks.task import TaskTarget

__all__ = ["DIVERGED_RULES", "chance_scores", "is_diverged", "score_diverged"]

DIVERGED_RULES: tuple[str, ...] = ("chance", "drop")
"""How diverged episodes are scored: at ``"chance"`` (a failure, kept in means and paired tests) or
``"drop"`` (NaN metrics: left out, but counted)."""

_DIVERGED = "non-finite"  # the left_out reason evaluate() gives an episode with non-finite logits


def chance_scores(task_target: TaskTarget | str, n_classes: int) -> dict[str, float]:
    """The scores of the uniform prediction on an episode of ``n_classes`` balanced classes (see the module).

    Raises:
        ValueError: an unknown task kind, or fewer than 2 classes (1 label for multi-label tasks).

    Examples:
        >>> chance_scores("MULTICLASS_CLASSIFICATION", 4)["accuracy"]
        0.25
        >>> s = chance_scores("ORDINAL_REGRESSION", 3)
        >>> s["auroc"], round(s["mae"], 4), s["qwk"]
        (0.5, 0.6667, 0.0)
    """
    kind = TaskTarget.parse(task_target)
    n = int(n_classes)
    least = 1 if kind is TaskTarget.MULTILABEL_CLASSIFICATION else 2
    if n < least:
        raise ValueError(f"a {kind.name} episode has at least {least} classes, got n_classes={n_classes!r}")
    if kind in (TaskTarget.MULTICLASS_CLASSIFICATION, TaskTarget.ORDINAL_REGRESSION):
        scores = {"auroc": 0.5, "accuracy": 1.0 / n, "loss": math.log(n), "mae": math.nan, "qwk": math.nan}
        if kind is TaskTarget.ORDINAL_REGRESSION:
            middle = (n - 1) / 2
            scores["mae"] = math.fsum(abs(k - middle) for k in range(n)) / n
            scores["qwk"] = 0.0
        return scores
    if kind in (TaskTarget.BINARY_CLASSIFICATION, TaskTarget.MULTILABEL_CLASSIFICATION):
        return {"auroc": 0.5, "accuracy": 0.5, "loss": math.log(2), "mae": math.nan, "qwk": math.nan}
    raise ValueError(f"no chance scores for {kind.name} tasks: episodes need classes")


def is_diverged(record: Mapping[str, Any]) -> bool:
    """Whether a record of [`evaluate()`][torchcross.evaluation.episodic.evaluate] (or of
    [`score_diverged()`][score_diverged]) is of a diverged episode."""
    flag = record.get("diverged")
    return bool(flag) if flag is not None else record.get("left_out") == _DIVERGED


def score_diverged(records: Iterable[Mapping[str, Any]], rule: str = "chance") -> list[dict[str, Any]]:
    """Copies of ``records`` marked ``diverged``; with ``rule="chance"`` the diverged ones scored at chance.

    A diverged record (``left_out == "non-finite"``, or already marked) gets the
    [`chance_scores()`][chance_scores] of its ``task_target`` and ``n_classes`` for every metric
    it has, and an empty ``left_out`` (it is no longer left out). With ``rule="drop"`` its metrics
    stay NaN. Records of other episodes are copied unchanged (plus ``diverged = False``).

    Raises:
        ValueError: an unknown ``rule`` (naming `DIVERGED_RULES`).
    """
    if rule not in DIVERGED_RULES:
        accepted = ", ".join(map(repr, DIVERGED_RULES))
        raise ValueError(f"the diverged rule must be one of {accepted}, got {rule!r}")
    out = []
    for record in records:
        row = dict(record)
        row["diverged"] = is_diverged(record)
        if row["diverged"] and rule == "chance":
            scores = chance_scores(row["task_target"], row["n_classes"])
            row.update({m: v for m, v in scores.items() if m in row})
            row["left_out"] = ""
        out.append(row)
    return out
