"""Blocks of a docs page that code writes: the text between a start and an end marker.

``torchcross demo --docs`` and ``python -m torchcross.cli.foundation_demo --docs`` rewrite their output
blocks with these, so a documented table is always what the command printed last.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["read_marked_page", "replace_block"]


def read_marked_page(page: Path, start: str, end: str) -> str:
    """The text of ``page``, checked to hold both markers (before anything is written).

    Raises:
        FileNotFoundError: if ``page`` does not exist.
        ValueError: if it lacks a marker.
    """
    if not page.is_file():
        raise FileNotFoundError(f"{page} does not exist")
    text = page.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise ValueError(f"{page} must contain the markers {start} and {end}")
    return text


def replace_block(page: Path, text: str, start: str, end: str, lines: Sequence[str]) -> Path:
    """Write ``text`` to ``page`` with the block from ``start`` to ``end`` (both included) replaced by
    ``lines`` (which hold the markers themselves).

    Examples:
        >>> import tempfile
        >>> page = Path(tempfile.mkdtemp()) / "p.md"
        >>> text = "a\\n<!-- s -->\\nold\\n<!-- e -->\\nb\\n"
        >>> _ = replace_block(page, text, "<!-- s -->", "<!-- e -->", ["<!-- s -->", "new", "<!-- e -->"])
        >>> page.read_text(encoding="utf-8")
        'a\\n<!-- s -->\\nnew\\n<!-- e -->\\nb\\n'
    """
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    page.write_text(head + "\n".join(lines) + tail, encoding="utf-8")
    return page
