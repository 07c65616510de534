"""benchmarks/formats.py runs in quick mode, and times every registered format that has a synthetic writer."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from torchcross.datasets.formats import FORMATS, register_format

ROOT = Path(__file__).resolve().parents[1]


def test_the_formats_benchmark_runs_in_quick_mode_over_formats_registered_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts its folder on the path
    spec = importlib.util.spec_from_file_location("formats_bench", ROOT / "benchmarks/formats.py")
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # a format registered after the script was loaded (here: MedIMeta's reader under another name)
    register_format(dataclasses.replace(FORMATS["medimeta"], name="later-format"))
    try:
        report = bench.main(["--quick", "--json", str(tmp_path / "report.json")])
    finally:
        FORMATS.pop("later-format")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [r["format"] for r in saved["rows"]] == [r["format"] for r in report["rows"]]
    assert {"medimeta", "later-format"} <= {r["format"] for r in report["rows"]}
    for row in (r for r in report["rows"] if r["format"] in ("medimeta", "later-format")):
        assert row["images_per_episode"] == 60  # 3 classes of the synthetic MedIMeta task x (5 + 15)
        assert row["episodes_per_s"] > 0
        assert row["ratio"] > 0
