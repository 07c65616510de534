"""One ``[[data.collections]]`` entry of a protocol config: a folder of one meta-dataset format.

A value of its own (no heavy imports), read by the config (`torchcross.protocol.config`) and by the
merged catalogue (`torchcross.protocol.data_collections`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DataCollection"]


@dataclass(frozen=True)
class DataCollection:
    """One ``[[data.collections]]`` entry: a folder of one meta-dataset format.

    Attributes:
        root: the folder the format scans (relative paths: against the config file's folder).
        format: a registered format name (`torchcross.datasets.formats.FORMATS`; unset in the
            file: ``[data] format``).
        prefix: put before the ids of this collection's datasets (``"ma-"``: ``"ma-BCT"``), so that ids of
            several collections do not clash.
        options: ``(key, value)`` pairs of the format's own options (the entry's other keys), passed to
            its ``scan`` and ``open``.

    Examples:
        >>> DataCollection(Path("/data/meta-album"), "medimeta", "ma-").to_dict()
        {'root': '/data/meta-album', 'format': 'medimeta', 'prefix': 'ma-'}
    """

    root: Path
    format: str = "medimeta"
    prefix: str = ""
    options: tuple[tuple[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The entry as the config file writes it (options as keys of their own)."""
        out: dict[str, Any] = {"root": str(self.root), "format": self.format}
        if self.prefix:
            out["prefix"] = self.prefix
        return {**out, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.options}}
