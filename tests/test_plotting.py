"""plot_metric draws one errorbar series per method and writes the file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from torchcross.evaluation.plotting import plot_metric
from torchcross.evaluation.results import ResultsTable

ROWS = [
    {"method": m, "target": t, "auroc_mean": v, "auroc_ci_low": v - 0.05, "auroc_ci_high": v + 0.05}
    for m, base in (("IM-PT", 0.6), ("mm-PT", 0.7), ("mm-MAML", 0.65))
    for t, v in (("digit", base), ("even digit", base + 0.1))
]


def test_plot_writes_png_with_one_series_per_method(tmp_path: Path) -> None:
    fig = plot_metric(ROWS, tmp_path / "auroc.png", title="demo")
    data = (tmp_path / "auroc.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == sorted(["IM-PT", "mm-PT", "mm-MAML", "chance"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["digit", "even digit"]
    assert ax.get_title() == "demo"


def test_plot_tolerates_missing_intervals(tmp_path: Path) -> None:
    rows = [{"method": "a", "target": "t", "auroc_mean": 0.7, "auroc_ci_low": None, "auroc_ci_high": None}]
    plot_metric(rows, tmp_path / "p.svg", chance=None)
    assert (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")


def test_plot_errors_name_the_problem() -> None:
    with pytest.raises(KeyError, match="auroc_ci_low"):
        plot_metric([{"method": "a", "target": "t", "auroc_mean": 0.5}])
    with pytest.raises(ValueError, match="empty"):
        plot_metric(
            ResultsTable([], columns=["method", "target", "auroc_mean", "auroc_ci_low", "auroc_ci_high"])
        )


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"torchcross\[plot\]"):
        plot_metric(ROWS)
