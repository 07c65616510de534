"""Lazy re-exports for package ``__init__`` modules, so ``import torchcross`` stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return module-level ``__getattr__`` and ``__dir__`` serving ``exports`` lazily.

    Args:
        package: the package's ``__name__``.
        namespace: the package's ``globals()``; resolved names are cached there.
        exports: ``{public name: module that defines it}``, relative to ``package``
            or absolute (starting with ``torchcross.``).

    Examples:
        >>> getattr_, dir_ = lazy_exports("torchcross.data", {}, {"Task": "task"})
        >>> getattr_("Task").__name__, dir_()
        ('Task', ['Task'])
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        path = module if module.startswith("torchcross.") else f"{package}.{module}"
        value = getattr(importlib.import_module(path), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
