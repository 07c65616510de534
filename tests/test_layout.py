"""The package layout: no import cycles, no private names imported across modules, layers in order.

The import graph is read from the sources with :mod:`ast`, so it holds every import:
module level, inside functions (lazy imports) and under ``TYPE_CHECKING``. A name
imported from a package with lazy exports (``_EXPORTS`` in its ``__init__``) counts as an
import of the module that defines it.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import torchcross

PACKAGE = Path(torchcross.__file__).parent

# layer order: a module imports only from its own layer or layers to the left
LAYERS = (
    "distributed",
    "tasks",
    "sampling",
    "data",
    "datasets",
    "backbones",
    "nn",
    "learners",
    "evaluation",
    "lightning",
    "protocol",
    "cli",
    "compat",  # torchcross 0.0.6 behind a fence: it may import every layer, no layer imports it
)
BASE = frozenset(
    {
        "torchcross",
        "torchcross._checks",
        "torchcross._io",
        "torchcross._lazy",
        "torchcross._threads",
        "torchcross.threads",
    }
)  # left of every layer
# torchcross 0.0.6 import paths, kept as one-line alias modules of torchcross.compat: every module under
# these packages, and these modules
ALIAS_PACKAGES = ("torchcross.models", "torchcross.cd", "torchcross.utils")
ALIAS_MODULES = frozenset(
    {
        "torchcross.data.dataset",
        "torchcross.data.task",
        "torchcross.data.task_source",
        "torchcross.data.metadataset.few_shot",
        "torchcross.data.metadataset.few_shot_dummies",
    }
)
# 0.0.6 names of a core namespace that is also a 0.0.6 import path: ``torchcross.data.metadataset`` serves
# 0.0.6's signatures of these classes (from torchcross.compat, lazily); torchcross.data serves the core ones
NAMESPACE_REEXPORTS = frozenset(
    {
        ("torchcross.data.metadataset", "FewShotMetaDataset"),
        ("torchcross.data.metadataset", "SubTaskRandomFewShotMetaDataset"),
        ("torchcross.data.metadataset", "TakeFirstFewShotMetaDataset"),
    }
)


def _is_alias(module: str) -> bool:
    return module in ALIAS_MODULES or any(module == p or module.startswith(p + ".") for p in ALIAS_PACKAGES)


def _is_compat(module: str) -> bool:
    return module == "torchcross.compat" or module.startswith("torchcross.compat.")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    name: str | None  # the imported name (``from target import name``); None for ``import target``
    line: int

    def __str__(self) -> str:
        what = f" ({self.name})" if self.name else ""
        return f"{self.source}:{self.line} -> {self.target}{what}"


def _module_names() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("torchcross", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _lazy_exports(package: str, tree: ast.Module) -> dict[str, str]:
    """``{name: defining module}`` of a package ``__init__`` that serves names lazily."""
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "_EXPORTS" and isinstance(node.value, ast.Dict):
            out = {}
            for key, value in zip(node.value.keys, node.value.values):
                assert isinstance(key, ast.Constant), f"{package}: _EXPORTS keys must be strings"
                assert isinstance(value, ast.Constant), f"{package}: _EXPORTS values must be strings"
                module = value.value
                out[key.value] = module if module.startswith("torchcross.") else f"{package}.{module}"
            return out
    return {}


@functools.cache
def _graph() -> tuple[set[str], list[Edge], list[str]]:
    """Modules, import edges between them, and relative imports (``path:line``)."""
    modules = _module_names()
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in modules.items()}
    exports = {name: _lazy_exports(name, tree) for name, tree in trees.items()}
    edges, relative = [], []
    for source, tree in trees.items():
        for module, target in exports[source].items():  # a lazy export is an import on first use
            edges.append(Edge(source, target, module, 0))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges += [
                    Edge(source, a.name, None, node.lineno)
                    for a in node.names
                    if a.name.split(".")[0] == "torchcross"
                ]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    relative.append(f"{source}:{node.lineno}")
                    continue
                if node.module is None or node.module.split(".")[0] != "torchcross":
                    continue
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    if submodule in modules:
                        target = submodule
                    else:
                        target = exports.get(node.module, {}).get(alias.name, node.module)
                    edges.append(Edge(source, target, alias.name, node.lineno))
    return set(modules), [e for e in edges if e.source != e.target], relative


def _cycles(modules: set[str], edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    succ: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        succ.setdefault(e.source, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return found


def _rank(module: str) -> int | None:
    """Position in the layer order (0: the base modules); None for aliases and unknown folders."""
    if module in BASE:
        return 0
    if _is_alias(module):
        return None
    parts = module.split(".")
    return LAYERS.index(parts[1]) + 1 if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    modules, edges, _ = _graph()
    assert {"torchcross.sampling.episodes", "torchcross.protocol.run", "torchcross.cli.demo"} <= modules
    pairs = {(e.source, e.target) for e in edges}
    # imported inside a function, resolved through torchcross.data.metadataset's names
    assert ("torchcross.protocol.run", "torchcross.data.metadataset.episode_set") in pairs
    # a lazy export of a package
    assert ("torchcross.data", "torchcross.data.sources") in pairs


def test_no_import_cycles() -> None:
    modules, edges, _ = _graph()
    cycles = _cycles(modules, edges)
    inside = [str(e) for c in cycles for e in edges if e.source in c and e.target in c]
    assert not cycles, "import cycles among " + "; ".join(map(str, cycles)) + ":\n" + "\n".join(inside)


def test_no_private_names_imported_across_modules() -> None:
    _, edges, _ = _graph()
    private = [
        str(e)
        for e in edges
        if e.line
        and e.name
        and e.name.startswith("_")
        and not (e.name.startswith("__") and e.name.endswith("__"))
    ]
    assert not private, (
        "private names imported across modules (make them public, or move them):\n" + "\n".join(private)
    )


def test_imports_are_absolute() -> None:
    _, _, relative = _graph()
    assert not relative, "relative imports: " + ", ".join(relative)


def test_nothing_in_the_package_imports_the_0_0_6_aliases() -> None:
    _, edges, _ = _graph()
    bad = [str(e) for e in edges if _is_alias(e.target) and not _is_alias(e.source)]
    assert not bad, "modules importing the 0.0.6 aliases (import torchcross.compat...):\n" + "\n".join(bad)


def test_the_core_does_not_import_compat() -> None:
    """The fence: only torchcross.compat itself, the 0.0.6 alias modules and the 0.0.6 names of
    ``torchcross.data.metadataset`` (served lazily) import torchcross.compat."""
    _, edges, _ = _graph()
    fenced = [e for e in edges if _is_compat(e.target)]
    bad = [
        str(e)
        for e in fenced
        if not (_is_compat(e.source) or _is_alias(e.source) or (e.source, e.name) in NAMESPACE_REEXPORTS)
    ]
    assert not bad, "core modules importing torchcross.compat (0.0.6 compatibility only):\n" + "\n".join(bad)


def test_aliases_are_one_line_re_exports_of_compat() -> None:
    """An alias module holds a docstring and imports, from its compat twin (or another alias) only."""
    modules = _module_names()
    bad = []
    for name, path in modules.items():
        if not _is_alias(name):
            continue
        twin = name.replace("torchcross.", "torchcross.compat.", 1)
        if twin not in modules:
            bad.append(f"{name}: no {twin}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        body = tree.body[1:] if ast.get_docstring(tree) else tree.body
        for node in body:
            if isinstance(node, ast.ImportFrom) and node.module == twin:
                continue
            if isinstance(node, ast.Import) and all(_is_alias(a.name) for a in node.names):
                continue
            bad.append(f"{name}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not bad, "alias modules doing more than re-exporting torchcross.compat:\n" + "\n".join(bad)


def test_every_compat_module_of_a_0_0_6_package_has_its_alias() -> None:
    modules = _module_names()
    twins = [m.replace("torchcross.compat.", "torchcross.", 1) for m in modules if _is_compat(m)]
    missing = sorted(t for t in twins if _is_alias(t) and t not in modules)
    assert not missing, f"0.0.6 import paths without an alias module: {missing}"


def test_layers_import_only_to_the_left() -> None:
    modules, edges, _ = _graph()
    unplaced = sorted(m for m in modules if _rank(m) is None and not _is_alias(m))
    assert not unplaced, f"modules outside the layers {LAYERS}: {unplaced}"
    bad = [
        f"{e}  [{e.source.split('.')[1]} may not import {e.target.split('.')[1]}]"
        for e in edges
        if _rank(e.source) is not None
        and _rank(e.target) is not None
        and _rank(e.target) > _rank(e.source)
        and (e.source, e.name) not in NAMESPACE_REEXPORTS
    ]
    assert not bad, f"imports against the layer order {' -> '.join(LAYERS)}:\n" + "\n".join(bad)
