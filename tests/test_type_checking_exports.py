"""Lazy namespaces also import their names under ``TYPE_CHECKING``, so type checkers and IDEs see them.

A package ``__init__`` that serves names lazily (``_EXPORTS`` and ``lazy_exports``) is opaque to static
tools: they see its module ``__getattr__`` and type every public name as ``Any``. Each such ``__init__``
therefore repeats its exports as ``from module import Name as Name`` under ``if TYPE_CHECKING:``, which
costs nothing at run time. These tests read the sources with :mod:`ast` and keep the two lists equal.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import torchcross

PACKAGE = Path(torchcross.__file__).parent


def _exports(package: str, tree: ast.Module) -> dict[str, str] | None:
    """``{name: absolute defining module}`` from the ``_EXPORTS`` literal, or None without one."""
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "_EXPORTS" and node.value is not None:
            exports = ast.literal_eval(node.value)
            return {
                name: module if module.startswith("torchcross.") else f"{package}.{module}"
                for name, module in exports.items()
            }
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _type_checking_imports(tree: ast.Module) -> list[tuple[str, str, str | None, int]]:
    """``(module, name, alias, line)`` for each ``from module import name`` under a top-level
    ``if TYPE_CHECKING:``."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
                    out += [(stmt.module, a.name, a.asname, stmt.lineno) for a in stmt.names]
    return out


def _lazy_namespaces() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("__init__.py")):
        package = ".".join(("torchcross", *path.parent.relative_to(PACKAGE).parts))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if _exports(package, tree) is not None:
            found[package] = tree
    return found


LAZY = _lazy_namespaces()


def test_the_lazy_namespaces_are_found() -> None:
    names = "cli compat.models.lightning data datasets distributed evaluation learners lightning protocol"
    expected = {f"torchcross.{name}" for name in (*names.split(), "sampling", "tasks", "compat.models")}
    assert expected <= set(LAZY)


@pytest.mark.parametrize("package", sorted(LAZY))
def test_type_checking_imports_match_the_lazy_exports(package: str) -> None:
    tree = LAZY[package]
    exports = _exports(package, tree)
    assert exports is not None
    imports = _type_checking_imports(tree)
    imported = {name: module for module, name, _, _ in imports}
    missing = sorted(set(exports) - set(imported))
    assert not missing, f"{package}: under TYPE_CHECKING, import `Name as Name` for {missing}"
    extra = sorted(set(imported) - set(exports))
    assert not extra, f"{package}: names imported under TYPE_CHECKING but not in _EXPORTS: {extra}"
    moved = [f"{n}: {imported[n]} != {exports[n]}" for n in exports if imported[n] != exports[n]]
    assert not moved, f"{package}: TYPE_CHECKING imports from elsewhere than _EXPORTS:\n" + "\n".join(moved)
    # ``Name as Name`` marks an explicit re-export for type checkers (mypy --no-implicit-reexport, pyright)
    implicit = [f"line {line}: {name}" for _, name, alias, line in imports if alias != name]
    assert not implicit, f"{package}: write `Name as Name` under TYPE_CHECKING:\n" + "\n".join(implicit)
    assert len(imports) == len(exports), f"{package}: a name is imported twice under TYPE_CHECKING"


@pytest.mark.parametrize("package", sorted(LAZY))
def test_all_lists_the_lazy_exports(package: str) -> None:
    exports = _exports(package, LAZY[package])
    assert exports is not None
    module = __import__(package, fromlist=["__all__"])
    assert sorted(module.__all__) == sorted(exports)


def test_importing_the_namespaces_stays_lazy() -> None:
    """The TYPE_CHECKING imports do not run: importing every lazy namespace imports no torch."""
    code = (
        "import sys\n"
        f"for name in {sorted(LAZY)!r}:\n"
        "    __import__(name)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_lazy_subpackages_of_torchcross_are_visible_to_type_checkers() -> None:
    """``import torchcross; torchcross.data.X`` is typed: ``__init__.pyi`` names every lazy subpackage."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    declared = next(
        ast.literal_eval(n.value.args[0])
        for n in tree.body
        if isinstance(n, ast.Assign)
        and isinstance(n.targets[0], ast.Name)
        and n.targets[0].id == "_SUBMODULES"
    )
    stub = ast.parse((PACKAGE / "__init__.pyi").read_text(encoding="utf-8"))
    typed = {
        alias.asname
        for stmt in stub.body
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "torchcross"
        for alias in stmt.names
    }
    assert typed == set(declared)
