"""Plot protocol results: a metric's mean with its confidence interval per method and target.

matplotlib is an optional dependency (``pip install torchcross[plot]``); it is imported
only when a plot is drawn. Figures are built with `matplotlib.figure.Figure`
directly, so no display or pyplot backend is needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torchcross.evaluation.results import ResultsTable

__all__ = ["plot_metric", "require_matplotlib"]


def require_matplotlib() -> Any:
    """Return matplotlib's ``Figure`` class; an ``ImportError`` naming the ``plot`` extra if it is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib, which is not installed; "
            "install it with `pip install torchcross[plot]`"
        ) from exc
    return Figure


def plot_metric(
    summary: ResultsTable | Iterable[Mapping[str, Any]],
    path: str | Path | None = None,
    metric: str = "auroc",
    *,
    chance: float | None = 0.5,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    dpi: int = 120,
) -> Any:
    """Draw ``<metric>_mean`` with its confidence interval per target, one marker colour per method.

    Args:
        summary: rows with ``method``, ``target``, ``<metric>_mean``, ``<metric>_ci_low``
            and ``<metric>_ci_high`` (as
            [`torchcross.evaluation.episodic.summarize()`][torchcross.evaluation.episodic.summarize] writes).
        path: where to save the figure (format from the suffix, e.g. ``.png``, ``.svg``);
            ``None`` only returns it.
        metric: the metric to plot.
        chance: draw a dashed line at this value (``None`` for no line).
        title: figure title (defaults to the metric's name).
        labels: the legend entry per method (default: the method's name), e.g. to say what its interval
            is; draw one row per method and target (several seeds: their summary, not one row each).
        dpi: resolution of saved raster images.

    Returns:
        the `matplotlib.figure.Figure`.

    Raises:
        ImportError: if matplotlib is not installed (naming ``torchcross[plot]``).
        KeyError: if a needed column is missing.
        ValueError: if there are no rows.

    Examples:
        >>> rows = [
        ...     {
        ...         "method": "IM-PT",
        ...         "target": "t1",
        ...         "auroc_mean": 0.7,
        ...         "auroc_ci_low": 0.65,
        ...         "auroc_ci_high": 0.75,
        ...     },
        ...     {
        ...         "method": "mm-PT",
        ...         "target": "t1",
        ...         "auroc_mean": 0.8,
        ...         "auroc_ci_low": 0.77,
        ...         "auroc_ci_high": 0.83,
        ...     },
        ... ]
        >>> fig = plot_metric(rows)
        >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
        ['t1']
    """
    figure_cls = require_matplotlib()
    table = summary if isinstance(summary, ResultsTable) else ResultsTable(summary)
    needed = ["method", "target", f"{metric}_mean", f"{metric}_ci_low", f"{metric}_ci_high"]
    for name in needed:
        if name not in table.columns:
            raise KeyError(f"plot_metric needs column {name!r}; the table has {table.columns}")
    if len(table) == 0:
        raise ValueError("plot_metric got an empty table; run an evaluation first")
    methods: list[str] = list(dict.fromkeys(str(m) for m in table.column("method")))
    targets: list[str] = list(dict.fromkeys(str(t) for t in table.column("target")))
    width = 0.8 / len(methods)
    legend_width = 0.07 * max(len(labels.get(m, m) if labels is not None else m) for m in methods)
    fig = figure_cls(
        figsize=(max(5.5, 2.2 + 0.5 * len(targets) * max(1, len(methods)), 2.2 + legend_width + 1.5), 3.8),
        dpi=dpi,
    )
    ax = fig.add_subplot(1, 1, 1)
    for k, method in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for row in table.where(method=method):
            mean = row[f"{metric}_mean"]
            if mean is None or (isinstance(mean, float) and math.isnan(mean)):
                continue
            low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
            low = mean if low is None or math.isnan(low) else low
            high = mean if high is None or math.isnan(high) else high
            xs.append(targets.index(str(row["target"])) - 0.4 + width * (k + 0.5))
            ys.append(mean)
            lo.append(mean - low)
            hi.append(high - mean)
        label = labels.get(method, method) if labels is not None else method
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=4, markersize=6, label=label)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels(
        targets, rotation=20 if len(targets) > 3 else 0, ha="right" if len(targets) > 3 else "center"
    )
    ax.set_xlim(-0.6, len(targets) - 0.4)
    ax.set_ylabel(f"{metric.upper() if metric == 'auroc' else metric} (mean, CI)")
    ax.set_title(
        title if title is not None else f"{metric.upper() if metric == 'auroc' else metric} per target"
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path), dpi=dpi)
    return fig
