"""Evaluate a few-shot learner over episodes: per-episode metrics and their summary.

[`evaluate()`][evaluate] asks a learner for query logits on every episode (a
[`Task`][Task]), scores them with
[`torchcross.evaluation.metrics.compute_metrics()`][torchcross.evaluation.metrics.compute_metrics] (AUROC,
accuracy and loss, each computed the
way the task's kind requires; ordinal tasks also MAE and quadratic weighted kappa) and
returns an ``EvaluationResult``: one record per episode plus mean, standard deviation
and a Student-t confidence interval per metric.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from torchcross._checks import check_int
from torchcross.evaluation.results import ResultsTable
from torchcross.evaluation.stats import Summary, summarize_values
from torchcross.tasks.task import Task

__all__ = [
    "LEFT_OUT",
    "METRICS",
    "BatchPredictor",
    "EvaluationResult",
    "Predictor",
    "evaluate",
    "format_summary",
    "summarize",
]

METRICS: tuple[str, ...] = ("auroc", "accuracy", "loss", "mae", "qwk")
"""The metrics ``evaluate`` records for every episode (``mae``, ``qwk``: NaN except on ordinal tasks)."""

LEFT_OUT: dict[str, str] = {
    "non-finite": "the logits hold NaN or inf (no metric is defined)",
    "auroc-undefined": "AUROC undefined: a class has no positive or no negative query example",
}
"""Why an episode's metrics are NaN (the ``left_out`` record field), and what it means."""


@runtime_checkable
class Predictor(Protocol):
    """Anything with ``predict(task) -> query logits`` (adapts on ``task.support`` first)."""

    def predict(self, task: Task) -> torch.Tensor: ...


@runtime_checkable
class BatchPredictor(Protocol):
    """Anything with ``predict_many(tasks) -> [query logits per task]``, equal to ``predict`` task by task.

    [`evaluate()`][evaluate] with ``batch_size > 1`` hands such a learner
    ``batch_size`` episodes at once (a linear-probe [`FineTuner`][torchcross.learners.finetuner.FineTuner]
    then shares backbone passes across episodes; a fully fine-tuning one, off the CPU, fine-tunes
    them together with stacked copies of its backbone).
    """

    def predict_many(self, tasks: Sequence[Task]) -> list[torch.Tensor]: ...


@dataclass
class EvaluationResult:
    """Per-episode metrics of one learner, and their summary.

    Attributes:
        records: one dict per episode with ``method``, ``target``, ``episode``,
            ``task_identifier``, ``domain``, ``task_target``, ``n_classes``,
            ``n_support``, ``n_query``, the `METRICS`, ``left_out`` (empty, or
            a key of `LEFT_OUT`: why the episode's metrics are NaN) and ``diverged``
            (its logits were not finite; see `torchcross.evaluation.diverged`).
        seconds: wall time of the evaluation.
        confidence: level of the confidence intervals in
            [`summary()`][EvaluationResult.summary].
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    confidence: float = 0.95

    def summary(self) -> dict[str, Summary]:
        """``{metric: Summary}`` over all episodes (``Summary.n_missing``: episodes left out)."""
        return {
            m: summarize_values((r.get(m, math.nan) for r in self.records), self.confidence) for m in METRICS
        }

    def left_out(self) -> dict[str, int]:
        """``{reason: number of episodes}`` of the episodes whose metrics are NaN (see `LEFT_OUT`)."""
        return _left_out(self.records, METRICS)

    def table(self) -> ResultsTable:
        """The per-episode records as a [`ResultsTable`][ResultsTable]."""
        return ResultsTable(self.records)

    def summary_table(self, by: Sequence[str] = ("method", "target")) -> ResultsTable:
        """One row per group of ``by`` with each metric's mean, std and interval (see
        [`summarize()`][summarize])."""
        return summarize(self.table(), by=by, confidence=self.confidence)

    @property
    def episodes_per_second(self) -> float:
        """Throughput of the evaluation."""
        return len(self.records) / self.seconds if self.seconds > 0 else math.inf


def _to_device(obj: Any, device: torch.device | None) -> Any:
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to_device(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to_device(o, device) for o in obj]
    return obj


def _iter_tasks(episodes: Iterable[Any]) -> Iterable[Task]:
    for item in episodes:
        if isinstance(item, Task):
            yield item
        elif isinstance(item, (list, tuple)) and item and all(isinstance(t, Task) for t in item):
            yield from item  # a batch of tasks, as a DataLoader with an identity collate yields
        else:
            raise TypeError(
                f"episodes must yield Task objects (or lists of them), got {type(item).__name__}; "
                "collate episodes into Task(support=(x, y), query=(x, y), description)"
            )


def _predict_fn(learner: Any) -> Callable[[Task], torch.Tensor]:
    if isinstance(learner, Predictor):
        return learner.predict
    if callable(learner):
        return learner
    raise TypeError(
        f"learner must have a predict(task) method returning query logits (or be such a callable), "
        f"got {type(learner).__name__}"
    )


def _predictions(
    predict: Callable[[Task], torch.Tensor],
    predict_many: Callable[[list[Task]], list[torch.Tensor]] | None,
    tasks: Iterable[Task],
    device: torch.device | None,
    batch_size: int,
) -> Iterator[tuple[int, Task, torch.Tensor]]:
    """``(episode number, task on device, query logits)``, predicting ``batch_size`` episodes at once."""
    chunk: list[Task] = []
    count = 0
    for task in tasks:
        task = Task(_to_device(task.support, device), _to_device(task.query, device), task.description)
        if predict_many is None:
            yield count, task, predict(task)
            count += 1
            continue
        chunk.append(task)
        if len(chunk) == batch_size:
            for t, logits in zip(chunk, predict_many(chunk)):
                yield count, t, logits
                count += 1
            chunk = []
    if chunk and predict_many is not None:
        for t, logits in zip(chunk, predict_many(chunk)):
            yield count, t, logits
            count += 1


def _check_finite(episodes: Any) -> None:
    from torchcross.data.metadataset.base import EpisodeMetaDataset

    dataset = getattr(episodes, "dataset", episodes)  # a DataLoader's dataset
    if isinstance(dataset, EpisodeMetaDataset) and dataset.length is None:
        raise ValueError(
            f"the episodes come from an endless {type(dataset).__name__} (length=None), so evaluate would "
            "never finish; create it with length=N (e.g. length=100) or evaluate a fixed EpisodeSet"
        )


def _left_out(rows: Iterable[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        # mae and qwk are NaN by definition for non-ordinal tasks: not a reason to leave a row out
        values = [row.get(m) for m in metrics if m not in ("mae", "qwk")]
        if not any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            continue
        reason = row.get("left_out") or "metric is NaN"
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def _length(episodes: Any) -> int | None:
    try:
        return len(episodes)
    except TypeError:
        return None


def evaluate(
    learner: Predictor | Callable[[Task], torch.Tensor],
    episodes: Iterable[Task],
    *,
    method: str = "",
    target: str = "",
    device: torch.device | str | None = None,
    progress: bool | None = None,
    confidence: float = 0.95,
    batch_size: int = 1,
) -> EvaluationResult:
    """Score ``learner`` on every episode and summarise the scores.

    Args:
        learner: has ``predict(task)`` returning query logits of shape
            ``(n_query, C)`` (``(n_query, 1)`` for binary tasks), or is such a callable.
            It adapts on the support set itself and must not change its meta-parameters.
        episodes: collated tasks (a list, a fixed episode set, a DataLoader over a
            meta-dataset); lists of tasks are flattened.
        method: label stored in every record (e.g. ``"mm-PT"``).
        target: label stored in every record; defaults to each task's identifier.
        device: move every episode there first (``None`` leaves tensors where they are).
        progress: show a tqdm progress bar; ``None`` shows it only on a terminal.
        confidence: level of the confidence intervals.
        batch_size: episodes handed to the learner at once when it is a
            [`BatchPredictor`][BatchPredictor] (has ``predict_many(tasks)``,
            e.g. a [`FineTuner`][torchcross.learners.finetuner.FineTuner]: a linear probe shares backbone
            passes across episodes, full fine-tuning (off the CPU, or with ``batching="vmap"``)
            fine-tunes them together with stacked copies of the backbone, in chunks that are halved
            when memory runs out); 1 calls ``predict`` episode by episode.

    Returns:
        an [`EvaluationResult`][EvaluationResult].

    Raises:
        TypeError: if the learner cannot predict or an episode is not a ``Task``.
        ValueError: if the logits do not fit the query set (reported with the episode number).

    Examples:
        >>> import torch
        >>> from torchcross.tasks.task import Task, TaskDescription
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
        >>> y = torch.tensor([[0], [1], [0], [1]])
        >>> tasks = [Task((torch.zeros(2, 1), y[:2]), (y.float() * 2 - 1, y), d) for _ in range(3)]
        >>> oracle = lambda task: task.query[0] * 3  # logits from the inputs, which leak the label
        >>> result = evaluate(oracle, tasks, method="oracle", progress=False)
        >>> result.summary()["auroc"].mean, len(result.records)
        (1.0, 3)
    """
    from tqdm.auto import tqdm

    from torchcross.evaluation.metrics import compute_metrics

    predict = _predict_fn(learner)
    _check_finite(episodes)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence=}")
    batch_size = check_int(batch_size, "batch_size", 1)
    predict_many = learner.predict_many if batch_size > 1 and isinstance(learner, BatchPredictor) else None
    dev = torch.device(device) if device is not None else None
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    bar = tqdm(
        total=_length(episodes),
        desc=f"evaluate {method or ''} {target or ''}".strip(),
        unit="episode",
        disable=None if progress is None else not progress,
        leave=False,
    )
    try:
        for i, task, logits in _predictions(predict, predict_many, _iter_tasks(episodes), dev, batch_size):
            labels = task.query[1]
            try:
                scores: Mapping[str, Any] = compute_metrics(logits.detach(), labels, task.description)
            except (ValueError, RuntimeError) as exc:
                raise ValueError(
                    f"episode {i} ({task.description.task_identifier!r}): cannot score logits of shape "
                    f"{tuple(logits.shape)} against labels of shape {tuple(labels.shape)}: {exc}"
                ) from exc
            desc = task.description
            reason = ""
            if not bool(torch.isfinite(logits.detach()).all()):
                reason = "non-finite"
            elif math.isnan(scores["auroc"]):
                reason = "auroc-undefined"
            record: dict[str, Any] = {
                "method": method,
                "target": target or desc.task_identifier,
                "episode": i,
                "task_identifier": desc.task_identifier,
                "domain": desc.domain_identifier,
                "task_target": desc.task_target.name,
                "n_classes": desc.num_classes,
                "n_support": len(task.support[1]),
                "n_query": len(labels),
            }
            record.update({m: float(scores.get(m, math.nan)) for m in METRICS})
            record["left_out"] = reason
            record["diverged"] = reason == "non-finite"
            records.append(record)
            bar.update(1)
    finally:
        bar.close()
    return EvaluationResult(records, time.perf_counter() - start, confidence)


def summarize(
    table: ResultsTable | Iterable[Mapping[str, Any]],
    by: Sequence[str] = ("method", "target"),
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> ResultsTable:
    """Group per-episode rows by ``by`` and summarise each metric.

    The result has the ``by`` columns, ``n_episodes``, for each metric
    ``<metric>_mean``, ``<metric>_std``, ``<metric>_ci_low`` and ``<metric>_ci_high``
    (Student-t interval at ``confidence``; NaN values are left out), then
    ``n_left_out`` (episodes with a NaN metric) and ``left_out`` (how many for each
    reason, from the rows' ``left_out`` field, see ``LEFT_OUT``), and ``n_diverged`` (episodes whose
    logits were not finite, whether scored at chance or left out: see
    [`score_diverged()`][torchcross.evaluation.diverged.score_diverged]; a row's ``diverged`` field
    counts as that many episodes, else ``left_out == "non-finite"`` as one). Groups keep their
    order of first appearance. ``metrics=None`` summarises those of ``METRICS`` that
    are columns of the table (all of them for an empty table).

    Raises:
        KeyError: if a ``by`` or metric column is missing (naming the columns that exist).

    Examples:
        >>> rows = [{"method": "a", "auroc": v} for v in (0.6, 0.7, 0.8)] + [{"method": "b", "auroc": 0.5}]
        >>> out = summarize(rows, by=["method"], metrics=["auroc"])
        >>> [(r["method"], r["n_episodes"], round(r["auroc_mean"], 3)) for r in out]
        [('a', 3, 0.7), ('b', 1, 0.5)]
        >>> nan = float("nan")
        >>> summarize([{"method": "a", "auroc": nan, "left_out": "non-finite"}], ["method"], ["auroc"])[0][
        ...     "left_out"
        ... ]
        '1 non-finite'
    """
    table = table if isinstance(table, ResultsTable) else ResultsTable(table)
    if metrics is None:
        metrics = [m for m in METRICS if m in table.columns] if len(table) else list(METRICS)
    stats = [f"{m}_{s}" for m in metrics for s in ("mean", "std", "ci_low", "ci_high")]
    if len(table) == 0:
        return ResultsTable([], columns=[*by, "n_episodes", *stats, "n_left_out", "left_out", "n_diverged"])
    for name in (*by, *metrics):
        if name not in table.columns:
            raise KeyError(f"no column {name!r} to summarise; columns are {table.columns}")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in table:
        groups.setdefault(tuple(row[b] for b in by), []).append(row)
    out = []
    for key, rows in groups.items():
        row_out: dict[str, Any] = dict(zip(by, key))
        row_out["n_episodes"] = len(rows)
        for m in metrics:
            s = summarize_values((math.nan if r[m] is None else r[m] for r in rows), confidence)
            row_out.update(
                {f"{m}_mean": s.mean, f"{m}_std": s.std, f"{m}_ci_low": s.ci_low, f"{m}_ci_high": s.ci_high}
            )
        reasons = _left_out(rows, metrics)
        row_out["n_left_out"] = sum(reasons.values())
        row_out["left_out"] = ", ".join(f"{n} {why}" for why, n in reasons.items())
        row_out["n_diverged"] = sum(_diverged_count(r) for r in rows)
        out.append(row_out)
    return ResultsTable(out)


def _diverged_count(row: Mapping[str, Any]) -> int:
    """How many diverged episodes a row stands for: its ``diverged`` field (a flag, or a count over
    seeds), else one if it was left out as ``non-finite``."""
    flag = row.get("diverged")
    if flag is not None:
        return int(flag)
    return int(row.get("left_out") == "non-finite")


def format_summary(
    summary: ResultsTable, metrics: Sequence[str] = ("auroc", "accuracy"), digits: int = 3
) -> ResultsTable:
    """A compact, human-readable view of a [`summarize()`][summarize] table:
    ``mean ± half-width`` per metric.

    Keeps the grouping columns (everything before ``n_episodes``) and ``n_episodes``, and
    adds per metric a ``<METRIC>`` column (``"0.812 ± 0.013"``) and a ``<METRIC> CI``
    column (``"[0.799, 0.825]"``). Cells are strings, so Markdown shows them as they are.
    A metric with no value in a group (MAE and QWK of a non-ordinal task) shows ``"n/a"``.
    If any episode was left out of a mean, a ``left out`` column says how many and why; if any
    diverged (``n_diverged``), a ``diverged`` column says how many.

    Examples:
        >>> rows = [{"method": "a", "auroc": v, "accuracy": v} for v in (0.6, 0.7, 0.8)]
        >>> view = format_summary(summarize(rows, by=["method"], metrics=["auroc", "accuracy"]), ["auroc"])
        >>> view[0]
        {'method': 'a', 'episodes': 3, 'AUROC': '0.700 ± 0.248', 'AUROC CI': '[0.452, 0.948]'}
    """
    if "n_episodes" not in summary.columns:
        raise KeyError(
            f"format_summary needs a summarize() table with n_episodes; columns are {summary.columns}"
        )
    keys = summary.columns[: summary.columns.index("n_episodes")]

    def cell(value: Any) -> str:
        return "nan" if value is None or math.isnan(value) else f"{value:.{digits}f}"

    out = []
    for row in summary:
        view: dict[str, Any] = {k: row[k] for k in keys}
        view["episodes"] = row["n_episodes"]
        for m in metrics:
            name = m.upper() if m in ("auroc", "mae", "qwk") else m
            mean, lo, hi = row[f"{m}_mean"], row[f"{m}_ci_low"], row[f"{m}_ci_high"]
            if mean is None or math.isnan(mean):
                view[name], view[f"{name} CI"] = "n/a", "n/a"
                continue
            half = None if lo is None or hi is None or math.isnan(lo) else (hi - lo) / 2
            view[name] = f"{cell(mean)} ± {cell(half)}"
            view[f"{name} CI"] = f"[{cell(lo)}, {cell(hi)}]"
        out.append(view)
    if any(row.get("n_left_out") for row in summary):
        for view, row in zip(out, summary):
            view["left out"] = row.get("left_out") or ""
    if any(row.get("n_diverged") for row in summary):
        for view, row in zip(out, summary):
            view["diverged"] = row.get("n_diverged") or 0
    return ResultsTable(out)
