"""Plot protocol results: a metric's mean with its confidence interval per method and target
([`plot_metric()`][plot_metric]), or against the number of shots ([`plot_shot_curve()`][plot_shot_curve]).

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

__all__ = ["plot_metric", "plot_shot_curve", "require_matplotlib"]


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


def _number(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (missing or NaN)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _bound(value: Any, mean: float) -> float:
    """An interval bound, or ``mean`` where it is missing (a band of no width)."""
    bound = _number(value)
    return mean if bound is None else bound


def plot_shot_curve(
    summary: ResultsTable | Iterable[Mapping[str, Any]],
    path: str | Path | None = None,
    metric: str = "auroc",
    *,
    chance: float | None = 0.5,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    dpi: int = 120,
) -> Any:
    """Draw ``<metric>_mean`` against ``n_shot`` with its confidence interval as a band: one line per
    method (per method and backbone if the rows have a ``backbone`` column), one panel per target.

    A row without ``n_shot`` (a method trained on the whole train split, such as ``supervised``) is drawn
    as a dotted horizontal line with its interval as a band across the panel.

    Args:
        summary: rows with ``method``, ``n_shot``, ``<metric>_mean``, ``<metric>_ci_low`` and
            ``<metric>_ci_high`` (``results.csv`` of a run with ``[evaluation] shots``); ``target`` (one
            panel each) and ``backbone`` are optional.
        path: where to save the figure (format from the suffix, e.g. ``.png``, ``.svg``); ``None`` only
            returns it.
        metric: the metric to plot.
        chance: draw a dashed line at this value (``None`` for no line).
        title: the figure's title (default: says what a line and a band are).
        labels: the legend entry per line name (the method, or ``"method (backbone)"``), e.g. to say what
            its interval is; default: the name.
        dpi: resolution of saved raster images.

    Returns:
        the `matplotlib.figure.Figure`; each panel has a line per method and a band
        (``fill_between``) per method with an interval.

    Raises:
        ImportError: if matplotlib is not installed (naming ``torchcross[plot]``).
        KeyError: if a needed column is missing.
        ValueError: if there are no rows or a row's ``n_shot`` is not a positive integer.

    Examples:
        >>> rows = [
        ...     {
        ...         "method": m,
        ...         "n_shot": k,
        ...         "auroc_mean": v,
        ...         "auroc_ci_low": v - 0.05,
        ...         "auroc_ci_high": v + 0.05,
        ...     }
        ...     for m, base in (("IM-PT", 0.6), ("linear-probe", 0.65))
        ...     for k, v in ((1, base), (5, base + 0.1), (10, base + 0.15))
        ... ]
        >>> fig = plot_shot_curve(rows)
        >>> ax = fig.axes[0]
        >>> [line.get_label() for line in ax.get_lines()][:2], len(ax.collections)
        (['IM-PT', 'linear-probe'], 2)
        >>> [float(x) for x in ax.get_lines()[0].get_xdata()]
        [1.0, 5.0, 10.0]
    """
    figure_cls = require_matplotlib()
    table = summary if isinstance(summary, ResultsTable) else ResultsTable(summary)
    needed = ["method", "n_shot", f"{metric}_mean", f"{metric}_ci_low", f"{metric}_ci_high"]
    for name in needed:
        if name not in table.columns:
            raise KeyError(f"plot_shot_curve needs column {name!r}; the table has {table.columns}")
    if len(table) == 0:
        raise ValueError("plot_shot_curve got an empty table; run a protocol with [evaluation] shots first")
    for row in table:
        k = row["n_shot"]
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(
                f"plot_shot_curve: n_shot = {k!r} in a row of {row['method']!r} is not a positive integer; "
                "pass the rows of results.csv (n_shot empty only for a method without episodes)"
            )
    has_target, has_backbone = "target" in table.columns, "backbone" in table.columns

    def line_name(row: Mapping[str, Any]) -> str:
        backbone = row["backbone"] if has_backbone else None
        return f"{row['method']} ({backbone})" if backbone is not None else str(row["method"])

    names = list(dict.fromkeys(line_name(r) for r in table))
    targets = list(dict.fromkeys(str(r["target"]) for r in table)) if has_target else [""]
    shots = sorted({int(r["n_shot"]) for r in table if r["n_shot"] is not None})
    cols = min(len(targets), 3)
    rows_n = math.ceil(len(targets) / cols)
    fig = figure_cls(figsize=(1.0 + 4.5 * cols, 1.0 + 3.4 * rows_n), dpi=dpi)  # legend outside, saved tight
    colours = [f"C{i % 10}" for i in range(len(names))]
    shown = metric.upper() if metric in ("auroc", "mae", "qwk") else metric
    for p, target in enumerate(targets):
        ax = fig.add_subplot(rows_n, cols, p + 1)
        mine = [r for r in table if not has_target or str(r["target"]) == target]
        for name, colour in zip(names, colours):
            label = labels.get(name, name) if labels is not None else name
            label = label if p == 0 else "_nolegend_"
            points = sorted(
                (int(r["n_shot"]), r) for r in mine if line_name(r) == name and r["n_shot"] is not None
            )
            flat = [r for r in mine if line_name(r) == name and r["n_shot"] is None]
            xs, ys, lo, hi = [], [], [], []
            for k, r in points:
                mean = _number(r[f"{metric}_mean"])
                if mean is None:
                    continue
                xs.append(k)
                ys.append(mean)
                lo.append(_bound(r[f"{metric}_ci_low"], mean))
                hi.append(_bound(r[f"{metric}_ci_high"], mean))
            if xs:
                ax.plot(xs, ys, marker="o", markersize=4, color=colour, label=label)
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, linewidth=0)
            elif flat and _number(flat[0][f"{metric}_mean"]) is not None:
                mean = float(flat[0][f"{metric}_mean"])
                span = [shots[0], shots[-1]] if shots else [0, 1]
                ax.plot(span, [mean, mean], linestyle=":", color=colour, label=label)
                low = _bound(flat[0][f"{metric}_ci_low"], mean)
                high = _bound(flat[0][f"{metric}_ci_high"], mean)
                ax.fill_between(span, [low, low], [high, high], color=colour, alpha=0.1, linewidth=0)
        if chance is not None:
            ax.axhline(
                chance, color="grey", linestyle="--", linewidth=1, label="chance" if p == 0 else "_nolegend_"
            )
        if shots:
            ax.set_xscale("log")
            ax.set_xticks(shots)
            ax.set_xticklabels([str(k) for k in shots])
            ax.minorticks_off()
        if metric in ("auroc", "accuracy"):  # bounded: a t interval past [0, 1] is cut at the frame
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("shots (support examples per class)")
        ax.set_ylabel(f"{shown} (mean, CI)")
        if has_target:
            ax.set_title(target, fontsize="medium")
        ax.grid(alpha=0.3)
    fig.suptitle(title if title is not None else f"{shown} against shots: mean (line) and CI (band)")
    handles, texts = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, texts, fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path), dpi=dpi, bbox_inches="tight")
    return fig
