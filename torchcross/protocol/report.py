"""The files a protocol run writes: the summary tables, ``results.*``, ``paired.csv`` and the plot.

[`summarize_results()`][summarize_results] turns the per-episode records
into the summary (episodic methods, then the supervised rows) and the paired comparisons;
[`write_results()`][write_results] writes them into ``run.out_dir``, each
file atomically.
"""

from __future__ import annotations

import json
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

__all__ = ["paired_note", "seed_mean", "summarize_results", "write_results"]


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
        row["diverged"] = sum(bool(r.get("diverged")) for r in rows)  # seeds where the episode diverged
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
    table_md = format_summary(summary, ("auroc", "accuracy", *shown)).to_markdown()
    note = paired_note(plan.methods, paired)
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
        from torchcross.evaluation.plotting import plot_metric

        ev = plan.config.evaluation
        files["plot"] = out / "auroc.png"
        title = f"{ev.n_shot}-shot AUROC (mean, {ev.confidence:.0%} CI)"
        atomic_write(files["plot"], lambda tmp: plot_metric(summary, tmp, "auroc", title=title))
    return files
