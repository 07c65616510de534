"""Import optional dependencies lazily, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

_PIP_NAMES = {"h5py": "h5py", "yaml": "PyYAML", "PIL": "Pillow", "PIL.Image": "Pillow"}


def require(module: str, feature: str = "MedIMeta support") -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` saying how to install it.

    Examples:
        >>> require("numpy").__name__
        'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pip_name = _PIP_NAMES.get(module, module)
        raise ImportError(
            f"{feature} needs the optional package {pip_name!r}, which is not installed; "
            "install it with `pip install torchcross[medimeta]`"
        ) from exc
