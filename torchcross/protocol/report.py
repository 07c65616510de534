"""The files a protocol run writes: the summary tables, ``results.*``, ``paired.csv`` and the plot.

[`summarize_results()`][summarize_results] turns the per-episode records
into the summary (episodic methods, then the supervised rows) and the paired comparisons;
[`write_results()`][write_results] writes them into ``run.out_dir``, each
file atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchcross._io import atomic_write
from torchcross.evaluation.episodic import format_summary, summarize
from torchcross.evaluation.paired import paired_comparisons, seed_spread
from torchcross.evaluation.results import ResultsTable
from torchcross.protocol.config import config_to_dict
from torchcross.protocol.plan import ProtocolPlan

__all__ = ["seed_mean", "summarize_results", "write_results"]


def seed_mean(episodes: ResultsTable, metrics: tuple[str, ...]) -> ResultsTable:
    """One row per method, target and episode: each metric averaged over the training seeds."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in episodes:
        groups.setdefault((row["method"], row["target"], row["task_target"], row["episode"]), []).append(row)
    out = []
    for (method, target, kind, episode), rows in groups.items():
        row = {"method": method, "target": target, "task_target": kind, "episode": episode}
        for m in metrics:
            values = [float("nan") if r[m] is None else r[m] for r in rows]
            row[m] = sum(values) / len(values)
        out.append(row)
    return ResultsTable(out)


def summarize_results(
    plan: ProtocolPlan, episodes: ResultsTable, supervised: ResultsTable
) -> tuple[ResultsTable, ResultsTable | None]:
    """The summary (episodic methods, then supervised rows) and the paired comparisons."""
    from torchcross.evaluation.episodic import METRICS

    confidence = plan.config.evaluation.confidence
    by = ("method", "target", "task_target")
    several = len(plan.config.training_seeds) > 1
    pooled = seed_mean(episodes, METRICS) if several and len(episodes) else episodes
    summary = summarize(pooled, by=by, confidence=confidence)
    rows = summary.to_records()
    if several and len(episodes):
        spread = {tuple(r[b] for b in by): r for r in seed_spread(episodes, "auroc", by, confidence)}
        for r in rows:
            s = spread[tuple(r[b] for b in by)]
            r["n_seeds"], r["auroc_seed_std"] = s["n_seeds"], s["auroc_seed_std"]
    for r in supervised:
        row = {**{b: r[b] for b in by}, "n_episodes": 0}
        for m in METRICS:
            row[f"{m}_mean"] = r.get(m, float("nan"))
            row[f"{m}_std"] = float("nan")
            row[f"{m}_ci_low"] = r.get(f"{m}_ci_low", float("nan"))
            row[f"{m}_ci_high"] = r.get(f"{m}_ci_high", float("nan"))
        if several:
            row["n_seeds"], row["auroc_seed_std"] = 1, float("nan")
        row["seed"] = r["seed"]
        rows.append(row)
    methods = {r["method"] for r in pooled} if len(pooled) else set()
    paired = None
    if len(methods) > 1:
        paired = paired_comparisons(pooled, "auroc", by=("target",), confidence=confidence)
    columns = (
        summary.columns
        + [c for c in ("n_seeds", "auroc_seed_std") if several]
        + (["seed"] if len(supervised) else [])
    )
    return ResultsTable(rows, columns=columns), paired


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
    format_summary(summary, ("auroc", "accuracy", *shown)).to_markdown(files["results_md"])
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
        from torchcross.evaluation.plotting import plot_metric

        ev = plan.config.evaluation
        files["plot"] = out / "auroc.png"
        title = f"{ev.n_shot}-shot AUROC (mean, {ev.confidence:.0%} CI)"
        atomic_write(files["plot"], lambda tmp: plot_metric(summary, tmp, "auroc", title=title))
    return files
