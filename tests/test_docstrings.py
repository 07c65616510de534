"""Docstrings read well in an editor: no ragged fragments left by cross-reference rewrites.

A *fragment* is a short line of prose (one to three words, under 40 characters) between two long
lines of the same paragraph: what remains when a sentence is rewrapped by hand after a word grew
into a long ``[name][path]`` reference. Tables, lists, ``Args:`` entries, doctests and code fences
are not prose.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "torchcross"
_NOT_PROSE = (">>>", "...", "- ", "* ", "|", "```", "+", "=", "#")
_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:$")
_ENTRY = re.compile(r"^\*{0,2}[\w.]+( \([^)]*\))?: \S")  # an Args/Raises entry: "name: what it is"


def _prose(line: str) -> bool:
    text = line.strip()
    return (
        bool(text) and not text.startswith(_NOT_PROSE) and not _SECTION.match(text) and not _ENTRY.match(text)
    )


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def docstring_fragments(source: str) -> list[tuple[int, str]]:
    """``(line number in the docstring, text)`` of every fragment in the module's docstrings."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node, clean=True)
        if not doc:
            continue
        lines = doc.splitlines()
        in_fence = False
        code = []
        for line in lines:
            if line.strip().startswith("```"):
                in_fence = not in_fence
            code.append(in_fence or line.strip().startswith(("```", ">>>", "...")))
        for i in range(1, len(lines) - 1):
            before, line, after = lines[i - 1 : i + 2]
            if any(code[i - 1 : i + 2]) or not all(map(_prose, (before, line, after))):
                continue
            if not _indent(before) == _indent(line) == _indent(after):
                continue
            short = len(line.split()) <= 3 and len(line.strip()) < 40
            if short and len(before.strip()) >= 50 and len(after.strip()) >= 30:
                found.append((i, line.strip()))
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_docstrings_have_no_ragged_fragments(path: Path) -> None:
    fragments = docstring_fragments(path.read_text(encoding="utf-8"))
    assert not fragments, f"{path}: rewrap the paragraphs around these docstring lines: {fragments}"


def test_the_detector_finds_a_fragment_and_passes_a_paragraph() -> None:
    long_line = "A long line of a paragraph that goes on and on and on and on and on."
    ok = f'"""Title.\n\n{long_line}\nand ends here.\n"""'
    assert docstring_fragments(ok) == []
    bad = f'"""Title.\n\n{long_line}\nlearners\n{long_line}\n"""'
    assert docstring_fragments(bad) == [(3, "learners")]
    table = f'"""Title.\n\n{long_line}\n>>> x\n{long_line}\n"""'
    assert docstring_fragments(table) == []
