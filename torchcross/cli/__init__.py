"""The ``torchcross`` command: the protocol runner, MedIMeta tools and the demo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.cli.app import build_parser as build_parser
    from torchcross.cli.app import main as main

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "build_parser": "app",
    "main": "app",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
