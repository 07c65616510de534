"""Every ```python block of README.md and docs/*.md runs, so examples cannot rot.

Blocks of one page run top to bottom in one fresh namespace, in a temporary working
directory. Use ```text or ```console for anything that must not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(python_blocks(page)):
        code = compile(block, f"{page.name}[block {i}]", "exec")
        exec(code, namespace)


def test_readme_has_python_examples() -> None:
    assert python_blocks(ROOT / "README.md"), "README.md must contain runnable ```python examples"
