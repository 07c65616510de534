"""benchmarks/paper_protocol.py: the projected cost of the paper protocol (quick mode, counts, the docs)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    saved = list(sys.path)  # the script puts its folder on the path
    script = ROOT / "benchmarks/paper_protocol.py"
    spec = importlib.util.spec_from_file_location("paper_protocol_bench", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = saved


@pytest.fixture(scope="module")
def quick(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The report of one ``--quick`` run (a tiny Conv4: seconds) and its JSON file."""
    path = tmp_path_factory.mktemp("paper-cost") / "report.json"
    return bench.main(["--quick", "--json", str(path)]), path


def _layout(text: str) -> list[str]:
    """The table rows of ``text`` with every number masked."""
    return [re.sub(r"\d+(\.\d+)?", "#", line) for line in text.splitlines() if line.startswith("|")]


def test_quick_mode_projects_every_target_and_method(bench: ModuleType, quick: Any) -> None:
    report, path = quick
    saved = json.loads(path.read_text())
    assert [r["target"] for r in saved["rows"]] == list(bench.CATALOGUE)
    assert len(saved["rows"]) == 19
    for row in report["rows"]:
        assert set(row["seconds"]) == {"IM-PT", "mm-PT", "mm-MAML", "supervised"}
        assert all(s > 0 for s in row["seconds"].values())
        assert row["counts"]["IM-PT"] == {"finetune_episode": 100}
    total = sum(sum(r["seconds"].values()) for r in report["rows"])
    assert report["total_s"] == pytest.approx(total)
    units = report["units_s"]
    assert set(units) == {
        "pt_step",
        "forward_image",
        "maml_step",
        "maml_val_episode",
        "finetune_episode_by_ways",
    }
    glaucoma = next(r for r in report["rows"] if r["target"] == "glaucoma")
    episode = bench.finetune_seconds(units["finetune_episode_by_ways"], 2)
    assert glaucoma["seconds"]["IM-PT"] == pytest.approx(100 * episode)


def test_the_docs_show_the_table_the_script_prints(bench: ModuleType, quick: Any, tmp_path: Path) -> None:
    page = (ROOT / "docs/paper-cost.md").read_text(encoding="utf-8")
    start, end = bench.MARKERS
    block = page.split(start, 1)[1].split(end, 1)[0]
    report, _ = quick
    regenerate = "python benchmarks/paper_protocol.py --threads 1 --docs docs/paper-cost.md"
    assert _layout(block) == _layout(report["table"]), (
        f"docs/paper-cost.md is stale; regenerate: {regenerate}"
    )
    assert "benchmarks/paper_protocol.py" in block  # the command that made it
    copy = tmp_path / "page.md"
    copy.write_text(f"before\n{start}\nold\n{end}\nafter\n", encoding="utf-8")
    bench.write_docs(copy, "new")
    assert copy.read_text(encoding="utf-8") == f"before\n{start}\nnew\n{end}\nafter\n"


def test_counts_follow_the_leave_one_out_sources_and_the_defaults(bench: ModuleType) -> None:
    assert "dr_uwf" not in bench.sources("glaucoma")
    assert "fundus" not in bench.sources("glaucoma")
    assert "glaucoma" not in bench.sources("glaucoma")
    assert set(bench.sources("skinl_derm")).isdisjoint({"derm", "skinl_photo", "skinl_derm"})
    assert len(bench.sources("bus")) == 18
    epochs = {"pt": 20, "maml": 10, "supervised": 20}
    counts = bench.unit_counts("glaucoma", epochs)
    assert counts["supervised"] == {"pt_step": 20 * math.ceil(857 / 64), "forward_image": 20 * 152 + 336}
    source_tasks = sum(bench.CATALOGUE[d][0] for d in bench.sources("glaucoma"))
    assert counts["mm-MAML"]["maml_step"] == 10 * 1000 * source_tasks
    assert counts["mm-MAML"]["maml_val_episode"] == 10 * 100 * source_tasks
    assert bench.finetune_seconds({2: 1.0, 6: 3.0}, 4) == pytest.approx(2.0)
    assert bench.finetune_seconds({2: 1.0, 6: 3.0}, 14) == pytest.approx(7.0)
