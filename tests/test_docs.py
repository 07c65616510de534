"""Every ```python block of README.md and docs/*.md runs, so examples cannot rot.

Blocks of one page run top to bottom in one fresh namespace, in a temporary working
directory. Use ```text or ```console for anything that must not run.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


# Lightning's own notices on the tiny CPU runs of the Lightning recipe (scaling-out.md), and a deprecation
# inside Lightning that it cannot avoid on this torch
@pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning")
@pytest.mark.filterwarnings("ignore:Your .IterableDataset. has .__len__. defined:UserWarning")
@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(python_blocks(page)):
        code = compile(block, f"{page.name}[block {i}]", "exec", dont_inherit=True)  # as a user's script
        exec(code, namespace)


def test_readme_has_python_examples() -> None:
    assert python_blocks(ROOT / "README.md"), "README.md must contain runnable ```python examples"


SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|ref):`")


def test_docstrings_use_markdown_cross_references() -> None:
    """mkdocstrings renders Markdown cross-references; a Sphinx role would show as literal text."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "torchcross").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SPHINX_ROLE.search(line)
    ]
    assert not offenders, f"Sphinx roles in docstrings: {offenders[:10]} ({len(offenders)} in all)"


@pytest.mark.slow
def test_built_site_shows_no_raw_role(tmp_path: Path) -> None:
    """The built API reference (mkdocs build --strict) shows no Sphinx role as text."""
    import subprocess
    import sys

    site = tmp_path / "site"
    # not --quiet: it hides the warnings (unresolved cross-references) that --strict counts
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pages = list(site.rglob("*.html"))
    assert pages
    raw = [str(p.relative_to(site)) for p in pages if SPHINX_ROLE.search(p.read_text(encoding="utf-8"))]
    assert not raw, f"raw Sphinx roles in {raw}"


def _documented_config_keys(block: str) -> dict[str, set[str]]:
    """``{section: keys}`` of a TOML listing, commented-out keys (``# lr = ...``) included."""
    keys: dict[str, set[str]] = {}
    section = None
    for line in block.splitlines():
        header = re.match(r"\[(\w+)\]", line.strip())
        if header:
            section = header.group(1)
            keys.setdefault(section, set())
            continue
        key = re.match(r"\s*(?:#\s*)?(\w+)\s*=", line)
        if key and section is not None:
            keys[section].add(key.group(1))
    return keys


def test_protocol_page_lists_every_config_key_with_its_default() -> None:
    """docs/protocol.md's full listing holds exactly the keys the config schema accepts, at their defaults."""
    import math

    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    from torchcross.protocol.config import config_from_dict, config_to_dict

    page = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    listing = page.split("Every default can be changed", 1)[1]
    block = re.search(r"```toml\n(.*?)^```", listing, re.DOTALL | re.MULTILINE).group(1)
    documented = _documented_config_keys(block)
    parsed = tomllib.loads(block)
    config = config_from_dict(parsed)  # the uncommented values are a valid config
    keys = {name: {f.name for f in dataclasses.fields(sec)} for name, sec in config.sections().items()}
    assert keys == documented  # every key, those results.json leaves out while unset included
    schema = config_to_dict(config)
    required = {"data": ("root", "targets"), "run": ("out_dir",)}
    defaults = config_to_dict(
        config_from_dict({s: {k: parsed[s][k] for k in ks} for s, ks in required.items()})
    )
    shown_otherwise = {("run", "device")}  # "cuda" in the listing, "cpu" by default
    differ = [
        f"[{s}] {k} = {v!r} (default {defaults[s][k]!r})"
        for s, section in parsed.items()
        for k, v in section.items()
        if (s, k) not in shown_otherwise
        and schema[s][k] != defaults[s][k]
        and not (isinstance(v, float) and math.isclose(schema[s][k], defaults[s][k], rel_tol=1e-6))
    ]
    assert not differ, f"docs/protocol.md shows values other than the defaults: {differ}"
