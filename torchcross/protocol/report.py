"""The files a protocol run writes: the summary tables, ``results.*``, ``paired.csv`` and the plot.

[`summarize_results()`][summarize_results] turns the per-episode records
into the summary (episodic methods, then the supervised rows) and the paired comparisons;
[`write_results()`][write_results] writes them into ``run.out_dir``, each
file atomically.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchcross._io import atomic_write
from torchcross.evaluation.episodic import format_summary, summarize
from torchcross.evaluation.paired import paired_comparisons, seed_spread
from torchcross.evaluation.results import ResultsTable
from torchcross.protocol.config import config_to_dict
from torchcross.protocol.plan import ProtocolPlan
from torchcross.protocol.registry import get_method
from torchcross.protocol.selection import selection_note, summary_selection

__all__ = [
    "SEED_COLUMN",
    "format_results",
    "paired_note",
    "plot_labels",
    "seed_mean",
    "shot_curve_labels",
    "shown_rows",
    "summarize_results",
    "write_results",
]


def seed_mean(episodes: ResultsTable, metrics: tuple[str, ...]) -> ResultsTable:
    """One row per method, target and episode: each metric averaged over the training seeds.

    A shot curve's records (with ``n_shot``) are averaged per shot count, a model comparison's (with
    ``backbone``) per backbone: one row per method, target, episode, backbone and shot count.
    """
    extra = [c for c in ("backbone", "n_shot") if c in episodes.columns]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in episodes:
        key = (row["method"], row["target"], row["task_target"], row["episode"])
        groups.setdefault((*key, *(row[c] for c in extra)), []).append(row)
    out = []
    for (method, target, kind, episode, *values), rows in groups.items():
        row = {"method": method, "target": target, "task_target": kind, "episode": episode}
        row.update(zip(extra, values))
        for m in metrics:
            values = [float("nan") if r[m] is None else r[m] for r in rows]
            row[m] = sum(values) / len(values)
        row["diverged"] = sum(bool(r.get("diverged")) for r in rows)  # seeds where the episode diverged
        out.append(row)
    return ResultsTable(out)


def summarize_results(
    plan: ProtocolPlan, episodes: ResultsTable, supervised: ResultsTable
) -> tuple[ResultsTable, ResultsTable | None]:
    """The summary (episodic methods, then supervised rows) and the paired comparisons."""
    from torchcross.evaluation.episodic import METRICS

    confidence = plan.config.evaluation.confidence
    curve = plan.config.evaluation.shots is not None  # a shot curve: a row per shot count
    several_backbones = bool(plan.config.backbones)  # [[backbones]]: a row per backbone
    by = (
        "method",
        *(("backbone",) if several_backbones else ()),
        "target",
        "task_target",
        *(("n_shot",) if curve else ()),
    )
    several = len(plan.config.training_seeds) > 1
    pooled = seed_mean(episodes, METRICS) if several and len(episodes) else episodes
    summary = summarize(pooled, by=by, confidence=confidence)
    rows = summary.to_records()
    if several and len(episodes):
        spread = {tuple(r[b] for b in by): r for r in seed_spread(episodes, "auroc", by, confidence)}
        for r in rows:
            s = spread[tuple(r[b] for b in by)]
            r["n_seeds"], r["auroc_seed_std"] = s["n_seeds"], s["auroc_seed_std"]
    per_target: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in supervised:
        row = {**{b: r.get(b) for b in by}, "n_episodes": 0}
        for m in METRICS:
            row[f"{m}_mean"] = r.get(m, float("nan"))
            row[f"{m}_std"] = float("nan")
            row[f"{m}_ci_low"] = r.get(f"{m}_ci_low", float("nan"))
            row[f"{m}_ci_high"] = r.get(f"{m}_ci_high", float("nan"))
        if several:
            row["n_seeds"], row["auroc_seed_std"] = 1, float("nan")
        row["seed"], row["n_test"] = r["seed"], r.get("n_test")
        per_target.setdefault(tuple(r.get(b) for b in by), []).append(row)
    for seed_rows in per_target.values():
        rows.extend(seed_rows)
        if several:
            rows.append(_over_seeds(seed_rows, METRICS))
    chosen = summary_selection(rows, episodes, by)  # [selection]: the fine-tuning lr and steps chosen
    if several_backbones and len(pooled):  # a model comparison: every method on every backbone pairs
        pooled = ResultsTable([{**r, "method": f"{r['method']} ({r['backbone']})"} for r in pooled])
    methods = {r["method"] for r in pooled} if len(pooled) else set()
    paired = None
    if len(methods) > 1:
        within = ("target", "n_shot") if curve else ("target",)  # a shot count's episodes pair with its own
        paired = paired_comparisons(pooled, "auroc", by=within, confidence=confidence)
    columns = (
        summary.columns
        + [c for c in ("n_seeds", "auroc_seed_std") if several]
        + (["seed", "n_test"] if len(supervised) else [])
        + chosen
    )
    return ResultsTable(rows, columns=columns), paired


def _over_seeds(seed_rows: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """The row over all seeds of one per-task (bootstrap) method and target: the seeds' means and bounds
    averaged, ``n_seeds`` and ``auroc_seed_std``; ``seed`` is empty."""
    row = dict(seed_rows[0])
    for m in metrics:
        for stat in ("mean", "ci_low", "ci_high"):
            values = [r[f"{m}_{stat}"] for r in seed_rows]
            row[f"{m}_{stat}"] = math.fsum(values) / len(values)
    aurocs = [r["auroc_mean"] for r in seed_rows if not math.isnan(r["auroc_mean"])]
    row["n_seeds"] = len(seed_rows)
    row["auroc_seed_std"] = statistics.stdev(aurocs) if len(aurocs) > 1 else float("nan")
    row["seed"] = None
    return row


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def shown_rows(summary: ResultsTable) -> ResultsTable:
    """The rows of ``results.md`` and ``auroc.png``: one per method and target task.

    ``results.csv`` also holds a per-task method's (``supervised``'s) row per training seed; where it has
    their row over all seeds (empty ``seed``), only that one is shown.

    Examples:
        >>> rows = [{"method": "supervised", "target": "t", "seed": s} for s in (0, 1, None)]
        >>> shown_rows(ResultsTable(rows)).rows
        [{'method': 'supervised', 'target': 't', 'seed': None}]
    """
    if "seed" not in summary.columns:
        return summary
    over_seeds = {(r["method"], r["target"]) for r in summary if r["seed"] is None}
    kept = [r for r in summary if r["seed"] is None or (r["method"], r["target"]) not in over_seeds]
    return ResultsTable(kept, summary.columns)


SEED_COLUMN = "AUROC seeds: sd (n)"
"""The column of ``results.md`` with the between-seed spread (``[run] seeds`` with several seeds)."""


def format_results(summary: ResultsTable, metrics: Sequence[str], confidence: float, digits: int = 3) -> str:
    """The table of ``results.md`` (one row per method and target task), then one paragraph saying what
    its numbers are: what "±" is, what the between-seed column is, what a bootstrap row's interval is.

    Episodic rows show ``mean ± half-width`` of the Student-t interval over their episodes and its bounds;
    a per-task method's rows (``supervised``, with ``n_test``) show the mean and the bounds of its
    (asymmetric) bootstrap interval, and ``episodes`` names the test split instead. With several training
    seeds the column `SEED_COLUMN` shows the standard deviation of the per-seed mean AUROCs and the number
    of seeds.

    Args:
        summary: the summary of [`summarize_results()`][summarize_results] (``results.csv``).
        metrics: the metrics shown (e.g. ``("auroc", "accuracy")``).
        confidence: the level of the intervals (``[evaluation] confidence``).
        digits: decimals of the numbers.

    Examples:
        >>> from torchcross.evaluation.episodic import summarize
        >>> rows = [{"method": "a", "target": "t", "auroc": v} for v in (0.6, 0.7, 0.8)]
        >>> summary = summarize(rows, by=["method", "target"], metrics=["auroc"])
        >>> text = format_results(summary, ["auroc"], 0.95)
        >>> print(text.splitlines()[2])
        | a | t | 3 | 0.700 ± 0.248 | [0.452, 0.948] |
        >>> print(text.splitlines()[-1].split(";")[0])
        ± is the half-width of the 95% Student-t interval of the mean over a row's episodes
    """
    shown = shown_rows(summary)
    view = format_summary(shown, metrics, digits)
    bootstrap = ["n_test" in shown.columns and not _is_nan(r["n_test"]) for r in shown]
    several = "n_seeds" in shown.columns
    cells = []
    for row, cell, boot in zip(shown, view, bootstrap):
        if boot:
            cell["episodes"] = f"— (test split: {row['n_test']} images)"
            for m in metrics:
                name = m.upper() if m in ("auroc", "mae", "qwk") else m
                if cell[name] != "n/a":
                    cell[name] = f"{row[f'{m}_mean']:.{digits}f}"
        if several:
            sd, n = row["auroc_seed_std"], row["n_seeds"]
            spread = "—" if _is_nan(sd) else f"{sd:.{digits}f}"
            cell = _insert_after(cell, "AUROC CI", SEED_COLUMN, f"{spread} ({n})")
        cells.append(cell)
    n_seeds = max((int(r["n_seeds"] or 1) for r in shown), default=1) if several else 1
    methods = list(dict.fromkeys(str(r["method"]) for r, boot in zip(shown, bootstrap) if boot))
    episodic = not all(bootstrap)  # an empty table: no paragraph
    legend = _legend(confidence, episodic=episodic, bootstrap=methods, n_seeds=n_seeds)
    return ResultsTable(cells).to_markdown() + ("\n\n" + legend if legend else "")


def _insert_after(cell: dict[str, Any], after: str, key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cell.items():
        out[k] = v
        if k == after:
            out[key] = value
    if key not in out:
        out[key] = value
    return out


def _legend(confidence: float, *, episodic: bool, bootstrap: Sequence[str], n_seeds: int) -> str:
    """What the numbers of the ``results.md`` table are (said once, under the table)."""
    level = f"{confidence:.0%}"
    parts = []
    if episodic:
        parts.append(
            f"± is the half-width of the {level} Student-t interval of the mean over a row's episodes; the "
            "CI columns give its bounds."
        )
        if n_seeds > 1:
            parts.append(
                f"Each episode's scores are first averaged over the {n_seeds} training seeds, so that "
                f"interval leaves out the training noise; `{SEED_COLUMN}` shows it: the standard deviation "
                "of the per-seed mean AUROCs, over n seeds."
            )
    if bootstrap:
        one = len(bootstrap) == 1
        parts.append(
            f"{', '.join(bootstrap)} {'has' if one else 'have'} no ±: {'it is' if one else 'they are'} "
            "trained on a target task's train split and scored once on its whole test split (`episodes` "
            f"gives its size); the CI is a {level} percentile bootstrap interval over the test images (not "
            "patients), not symmetric, so shown as its bounds."
        )
        if n_seeds > 1:
            parts.append(
                "With several seeds, that score and its bounds are the means of the seeds' ones, and "
                f"`{SEED_COLUMN}` is the spread of the seeds' test AUROCs."
            )
    return " ".join(parts)


def paired_note(methods: Sequence[str], paired: ResultsTable | None) -> str:
    """The text under the table of ``results.md`` that explains ``paired.csv`` and names what it leaves out.

    ``paired.csv`` pairs episodic methods on their shared episodes; a method trained and scored per
    target task without episodes (``per_task``, e.g. ``supervised``) has nothing to pair, and the note
    says so and why. Empty when there is nothing to say.

    Examples:
        >>> note = paired_note(["scratch", "supervised"], None).splitlines()
        >>> note[0]
        'No `paired.csv`: it needs two methods scored on episodes.'
        >>> note[1].startswith("Not in `paired.csv`: supervised.")
        True
    """
    lines = []
    if paired is not None:
        lines.append(
            "`paired.csv` compares every pair of episodic methods per target task on the episodes "
            "they share: `mean_difference` is `method_a - method_b` (positive: `method_a` scored "
            "higher), `ci_low` and `ci_high` its Student-t interval, `wins` / `losses` / `ties` the "
            "episodes where `method_a` scored higher / lower / equal; `wilcoxon_p` and `sign_p` are "
            "two-sided p-values per row, `wilcoxon_p_holm` and `sign_p_holm` the same Holm-adjusted "
            "over all rows of the run."
            + (
                " Methods are paired within a shot count (`n_shot`) only."
                if "n_shot" in paired.columns
                else ""
            )
        )
    unpaired = [m for m in methods if get_method(m).per_task]
    if unpaired and paired is None:
        lines.append("No `paired.csv`: it needs two methods scored on episodes.")
    if unpaired:
        lines.append(
            f"Not in `paired.csv`: {', '.join(unpaired)}. "
            f"{'It is' if len(unpaired) == 1 else 'They are'} scored once on each target task's whole "
            "test split (its interval bootstraps test images, not patients), so "
            f"{'it has' if len(unpaired) == 1 else 'they have'} no episodes to pair with the episodic "
            "methods."
        )
    return "\n".join(lines)


def write_results(
    plan: ProtocolPlan,
    episodes: ResultsTable,
    summary: ResultsTable,
    seconds: float,
    paired: ResultsTable | None = None,
    supervised: ResultsTable | None = None,
    torch_threads: int | None = None,
) -> dict[str, Path]:
    """Write ``episodes.csv``, ``results.csv``, ``results.md``, ``results.json`` (and ``paired.csv``,
    ``supervised.csv``, ``auroc.png`` when there is something to put in them) into ``run.out_dir``.

    Returns:
        the files written, by name (``"results_csv"``, ...).
    """
    from torchcross import __version__

    out = Path(plan.config.run.out_dir)
    files = {
        "episodes_csv": out / "episodes.csv",
        "results_csv": out / "results.csv",
        "results_md": out / "results.md",
        "results_json": out / "results.json",
    }
    episodes.to_csv(files["episodes_csv"])
    summary.to_csv(files["results_csv"])
    ordinal = len(summary) > 0 and "ORDINAL_REGRESSION" in summary.column("task_target")
    shown = [m for m in ("mae", "qwk") if ordinal and f"{m}_mean" in summary.columns]
    confidence = plan.config.evaluation.confidence
    headline = _headline_metric(plan.config)
    table_md = format_results(
        summary, (headline, *(m for m in ("auroc", "accuracy") if m != headline), *shown), confidence
    )
    notes = (paired_note(plan.methods, paired), selection_note(plan.config, summary))
    note = "\n\n".join(n for n in notes if n)
    atomic_write(files["results_md"], table_md + ("\n\n" + note if note else ""))
    if paired is not None:
        files["paired_csv"] = out / "paired.csv"
        paired.to_csv(files["paired_csv"])
    if supervised is not None:
        files["supervised_csv"] = out / "supervised.csv"
        supervised.to_csv(files["supervised_csv"])
    doc = {
        "format": "torchcross-protocol-results",
        "torchcross_version": __version__,
        "wall_time_s": round(seconds, 3),
        "torch_threads": torch_threads,
        "config": config_to_dict(plan.config),
        "plan": [
            {
                "target": t.dataset_id,
                "tasks": list(t.tasks),
                "sources": [f"{d}/{n}" for d, n in t.sources],
                "excluded": list(t.excluded),
            }
            for t in plan.targets
        ],
        "methods": list(plan.methods),
        "summary": summary.to_records(),
        "paired": paired.to_records() if paired is not None else [],
        "supervised": supervised.to_records() if supervised is not None else [],
        "episodes": episodes.to_records(),
    }
    atomic_write(files["results_json"], json.dumps(doc, indent=1, allow_nan=False) + "\n")
    if plan.config.run.plot:
        from torchcross.evaluation.plotting import plot_metric, plot_shot_curve

        rows = curve = shown_rows(summary)
        at = None
        if plan.config.evaluation.shots is not None:  # a shot curve: auroc.png at its largest shot count
            at = max(plan.config.shot_counts)
            rows = ResultsTable([r for r in rows if r.get("n_shot") in (at, None)], rows.columns)
        title, labels = plot_labels(plan, rows, n_shot=at)
        if "backbone" in rows.columns:  # [[backbones]]: a marker per method and backbone
            rows, labels = _per_backbone(rows, labels)
        files["plot"] = out / f"{headline}.png"
        atomic_write(files["plot"], lambda tmp: plot_metric(rows, tmp, headline, title=title, labels=labels))
        if at is not None and len(plan.config.shot_counts) > 1 and len(curve):
            files["shots_plot"] = out / "shots.png"
            title, labels = shot_curve_labels(plan, curve)
            if "backbone" in curve.columns:  # plot_shot_curve draws a line per method and backbone
                labels = _per_backbone(curve, labels)[1]
            atomic_write(
                files["shots_plot"],
                lambda tmp: plot_shot_curve(curve, tmp, headline, title=title, labels=labels),
            )
    return files


def _per_backbone(rows: ResultsTable, labels: dict[str, str]) -> tuple[ResultsTable, dict[str, str]]:
    """``rows`` with ``method`` as ``"method (backbone)"``, and the labels of those names."""
    named = [{**r, "method": f"{r['method']} ({r['backbone']})"} for r in rows]
    out = {}
    for r in rows:
        method, name = str(r["method"]), f"{r['method']} ({r['backbone']})"
        out[name] = name + labels.get(method, method)[len(method) :]
    return ResultsTable(named, rows.columns), out


def plot_labels(
    plan: ProtocolPlan, rows: ResultsTable, n_shot: int | None = None
) -> tuple[str, dict[str, str]]:
    """The title and the legend labels (by method) of ``auroc.png``, which draws ``rows`` (one per
    method and target task, [`shown_rows()`][shown_rows]).

    The title says what a marker and its bar are (with several seeds: the mean over them); each label says
    what its method's score is: ``n``-shot episodes with a Student-t interval, or (``supervised``) the
    whole train split with a bootstrap interval over the test images. ``n_shot``: the shot count of a
    shot curve that ``rows`` are of (``None``: ``[evaluation] n_shot``).
    """
    ev = plan.config.evaluation
    shots = n_shot if n_shot is not None else ev.n_shot
    n_seeds = _seed_count(rows)
    title = (
        f"{_METRIC_TITLES[_headline_metric(plan.config)]} per target task: mean and {ev.confidence:.0%} CI"
    )
    if n_shot is not None:
        title += f" at {n_shot} shots (shots.png: every shot count)"
    if n_seeds > 1:
        title += f"\n(scores averaged over {n_seeds} training seeds)"
    labels = {}
    for method in dict.fromkeys(str(m) for m in rows.column("method")):
        if get_method(method).per_task:
            labels[method] = f"{method} (full training; CI: bootstrap, test images)"
        else:
            labels[method] = f"{method} ({shots}-shot; CI: t, {ev.n_episodes} episodes)"
    return title, labels


_METRIC_TITLES = {"auroc": "AUROC", "accuracy": "Accuracy"}


def _headline_metric(config: Any) -> str:
    """The metric ``results.md`` shows first and the plots draw: ``[evaluation] metric``, else ``"auroc"``."""
    return getattr(config.evaluation, "metric", None) or "auroc"


def _seed_count(rows: ResultsTable) -> int:
    """The most training seeds a row of ``rows`` averages (1 without an ``n_seeds`` column or value)."""
    if "n_seeds" not in rows.columns:
        return 1
    return max((int(r["n_seeds"] or 1) for r in rows), default=1)


def shot_curve_labels(plan: ProtocolPlan, rows: ResultsTable) -> tuple[str, dict[str, str]]:
    """The title and the legend labels (by method) of ``shots.png``, the shot curve of ``rows`` (one per
    method, target task and shot count, [`shown_rows()`][shown_rows]).

    The title says what a line and its band are (with several seeds: the mean over them); each label
    says what its method's interval is, as [`plot_labels()`][plot_labels] does.
    """
    ev = plan.config.evaluation
    n_seeds = _seed_count(rows)
    title = (
        f"{_METRIC_TITLES[_headline_metric(plan.config)]} against shots per target task: mean (line) and "
        f"{ev.confidence:.0%} CI (band)"
    )
    if n_seeds > 1:
        title += f"\n(scores averaged over {n_seeds} training seeds)"
    labels = {}
    for method in dict.fromkeys(str(m) for m in rows.column("method")):
        if get_method(method).per_task:
            labels[method] = f"{method} (full training, dotted; CI: bootstrap, test images)"
        else:
            labels[method] = f"{method} (CI: t, {ev.n_episodes} episodes per shot count)"
    return title, labels
