"""The ``torchcross`` command: the protocol runner, MedIMeta tools and the demo."""

from __future__ import annotations

from torchcross._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "build_parser": "app",
    "main": "app",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
