"""ResultsTable: access, filtering and round trips through CSV, JSON and Markdown."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from torchcross.evaluation.results import ResultsTable

ROWS = [
    {"method": "IM-PT", "target": "glaucoma", "auroc": 0.55, "n": 100},
    {"method": "mm-PT", "target": "glaucoma", "auroc": 0.5625, "n": 100},
    {"method": "mm-MAML", "target": "glaucoma", "auroc": float("nan"), "n": 0},
]


def test_columns_rows_and_access() -> None:
    t = ResultsTable(ROWS)
    assert t.columns == ["method", "target", "auroc", "n"]
    assert len(t) == 3
    assert t[1]["method"] == "mm-PT"
    assert t["n"] == [100, 100, 0]
    assert t.where(method="IM-PT").column("auroc") == [0.55]
    rows = t.rows
    rows[0]["method"] = "changed"
    assert t[0]["method"] == "IM-PT"  # rows are copies


def test_missing_values_and_explicit_columns() -> None:
    t = ResultsTable([{"a": 1}, {"b": 2}], columns=["b", "a"])
    assert t.columns == ["b", "a"]
    assert t.rows == [{"b": None, "a": 1}, {"b": 2, "a": None}]


def test_bad_input_is_reported() -> None:
    with pytest.raises(TypeError, match="row 0 must be a mapping"):
        ResultsTable([["not", "a", "dict"]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not in columns"):
        ResultsTable([{"a": 1, "b": 2}], columns=["a"])
    with pytest.raises(ValueError, match="repeat"):
        ResultsTable([], columns=["a", "a"])
    t = ResultsTable(ROWS)
    with pytest.raises(KeyError, match="columns are"):
        t.column("nope")
    with pytest.raises(KeyError, match="columns are"):
        t.where(nope=1)
    with pytest.raises(TypeError, match="concat takes"):
        ResultsTable.concat([t, ROWS])  # type: ignore[list-item]


def test_csv_round_trip(tmp_path: Path) -> None:
    t = ResultsTable(ROWS)
    text = t.to_csv(tmp_path / "r.csv")
    assert text.splitlines()[0] == "method,target,auroc,n"
    assert text.splitlines()[3] == "mm-MAML,glaucoma,,0"  # NaN is an empty cell
    back = ResultsTable.read_csv(tmp_path / "r.csv")
    assert back.columns == t.columns
    assert back.column("auroc") == [0.55, 0.5625, None]
    assert back.column("n") == [100, 100, 0]


def test_json_is_strict_and_round_trips(tmp_path: Path) -> None:
    t = ResultsTable([*ROWS, {"method": "x", "target": "y", "auroc": np.float64(0.25), "n": np.int64(3)}])
    text = t.to_json(tmp_path / "r.json")
    data = json.loads(text)  # strict JSON: NaN became null
    assert "NaN" not in text
    assert data[2]["auroc"] is None
    assert data[3]["n"] == 3
    back = ResultsTable.read_json(tmp_path / "r.json")
    assert back.column("auroc") == [0.55, 0.5625, None, 0.25]
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="JSON array"):
        ResultsTable.read_json(tmp_path / "bad.json")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        ResultsTable.read_csv(tmp_path / "empty.csv")


def test_markdown_alignment_and_formatting(tmp_path: Path) -> None:
    t = ResultsTable([*ROWS, {"method": "a|b", "target": "t", "auroc": None, "n": 1}])
    md = t.to_markdown(tmp_path / "r.md", floatfmt=".2f")
    lines = md.splitlines()
    assert lines[0] == "| method | target | auroc | n |"
    assert lines[1] == "|:--|:--|--:|--:|"
    assert lines[2] == "| IM-PT | glaucoma | 0.55 | 100 |"
    assert "| nan |" in lines[4]
    assert "a\\|b" in lines[5]
    assert (tmp_path / "r.md").read_text() == md


def test_concat_and_equality() -> None:
    a = ResultsTable([{"x": 1}])
    b = ResultsTable([{"y": 2}])
    c = ResultsTable.concat([a, b])
    assert c.columns == ["x", "y"]
    assert c.rows == [{"x": 1, "y": None}, {"x": None, "y": 2}]
    assert c == ResultsTable.concat([a, b])
    assert c != a
    assert "2 rows" in repr(c)
    assert math.isnan(ResultsTable(ROWS)["auroc"][2])
