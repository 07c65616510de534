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


# -- cross-references: scoped where the name is in scope, one link per target per docstring ---------------
_REF = re.compile(r"\[(?P<title>[^\[\]]+)\]\[(?P<target>torchcross(?:\.\w+)+)\]")


def _module_scope(tree: ast.Module, module: str, package: str) -> dict[str, str]:
    """Names a docstring of ``module`` can use as scoped references, with the full path they stand for."""
    names: dict[str, str] = {}

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                names[node.name] = f"{module}.{node.name}"
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)]
                source = (
                    ".".join([*base, node.module] if node.module else base) if node.level else node.module
                )
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.If):  # TYPE_CHECKING blocks
                visit(node.body)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update({t.id: f"{module}.{t.id}" for t in targets if isinstance(t, ast.Name)})

    visit(tree.body)
    return names


def long_references(path: Path) -> list[str]:
    """Full-path references that could be scoped (``[X][X.method]``), and repeated links to one target."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    module = ".".join(parts[:-1] if is_package else parts)
    scope = _module_scope(tree, module, module if is_package else module.rsplit(".", 1)[0])
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node, clean=False) or ""
        seen: set[str] = set()
        for match in _REF.finditer(doc):
            target = match.group("target")
            if target in seen:
                found.append(
                    f"{match.group(0)} (linked earlier in the same docstring: write the title alone)"
                )
            seen.add(target)
            pieces = target.split(".")
            for i in range(len(pieces), 0, -1):
                if scope.get(pieces[i - 1]) == ".".join(pieces[:i]):
                    short = ".".join(pieces[i - 1 :])
                    found.append(f"{match.group(0)} (in scope here: write [{match.group('title')}][{short}])")
                    break
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_cross_references_are_scoped_and_linked_once(path: Path) -> None:
    """mkdocs resolves scoped references (``scoped_crossrefs: true`` in mkdocs.yml); `mkdocs build --strict`
    fails on any that does not resolve, so a short reference cannot silently point nowhere."""
    assert not long_references(path), "\n".join(long_references(path))
