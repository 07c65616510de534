"""``[run] plugins``: the Python modules a config names, imported before its methods are checked.

Plugins run code: importing one executes it, with your permissions, as soon as the config is
read (also by ``torchcross run --check``, which has to, to check the methods they register).
So every plugin is announced on stderr, one line each, before it is loaded, and nothing is
loaded from the current directory by accident:

* a ``.py`` file is a path, relative to the config file's folder (or to the current
  directory for a config built in code without ``base_dir``): ``"my_methods.py"``,
  ``"plugins/extra.py"``, ``"/abs/path.py"``;
* a module name (``"my_package.methods"``) is imported from ``sys.path`` without the
  current-directory entry Python puts first under ``python -m`` and ``python -c`` (the
  folder, or ``""``): a file ``my_methods.py`` in the folder you happen to run from is never
  imported by name. List it as a file instead, or put its folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["import_plugin"]


def _announce(message: str) -> None:
    print(f"torchcross: {message}", file=sys.stderr, flush=True)


def _is_current_dir(index: int, entry: str, cwd: str) -> bool:
    """Whether a ``sys.path`` entry stands for the current directory without the user saying so."""
    if entry in ("", "."):
        return True
    # ``python -P`` (Python >= 3.11): Python put no such entry first
    if index != 0 or getattr(sys.flags, "safe_path", False):
        return False
    try:
        return os.path.samefile(entry, cwd)
    except OSError:
        return False


@contextmanager
def _without_current_dir() -> Iterator[None]:
    """``sys.path`` without the entries that `_is_current_dir` finds, put back afterwards."""
    cwd = os.getcwd()
    removed = [(i, entry) for i, entry in enumerate(sys.path) if _is_current_dir(i, entry, cwd)]
    for i, _ in reversed(removed):
        del sys.path[i]
    try:
        yield
    finally:
        for i, entry in removed:
            sys.path.insert(i, entry)


def _hint_for_local_file(name: str, base_dir: Path | None) -> str:
    """How to load ``name`` if it is a file in the current or the config's folder."""
    top = name.partition(".")[0]
    for folder, what in ((Path.cwd(), "the current directory"), (base_dir, "the config file's folder")):
        if folder is not None and (
            (folder / f"{top}.py").exists() or (folder / top / "__init__.py").exists()
        ):
            return (
                f"; {top!r} is in {what} {str(folder)!r}, where plugins are never looked up by module "
                f'name: list the file as a path, e.g. plugins = ["{top}.py"] (relative to the config '
                "file), or put its folder on PYTHONPATH"
            )
    return ""


def _import_module(name: str, base_dir: Path | None) -> Any:
    import importlib
    import importlib.util

    with _without_current_dir():
        try:
            spec = importlib.util.find_spec(name.partition(".")[0])
        except (ImportError, ValueError) as exc:
            spec, problem = None, str(exc)
        else:
            problem = f"No module named {name.partition('.')[0]!r}"
        if spec is None:
            hint = _hint_for_local_file(name, base_dir)
            raise ImportError(f"[run] plugins: cannot import module {name!r}: {problem}{hint}")
        where = spec.origin or "a namespace package"
        if "." in name:
            where = f"package {name.partition('.')[0]!r}: {where}"
        if name in sys.modules:
            _announce(f"plugin module {name!r} ({where}) is already imported; its code does not run again")
        else:
            _announce(f"loading plugin module {name!r} ({where}); its code runs now")
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"[run] plugins: cannot import module {name!r}: {exc}{_hint_for_local_file(name, base_dir)}"
            ) from exc
        except Exception as exc:
            raise ImportError(
                f"[run] plugins: module {name!r} failed while loading: {type(exc).__name__}: {exc}"
            ) from exc


def _import_file(path: Path) -> Any:
    import importlib.util

    if path.is_dir():
        raise IsADirectoryError(f"[run] plugins: {str(path)!r} is a directory; list the .py file itself")
    if not path.exists():
        raise FileNotFoundError(f"[run] plugins: file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"[run] plugins: {str(path)!r} is not a regular file; list a .py file")
    name = f"torchcross_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise ImportError(f"[run] plugins: cannot load {str(path)!r} as a Python module")
    _announce(f"loading plugin file {str(path)!r}; its code runs now")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ImportError(
            f"[run] plugins: {str(path)!r} failed while loading: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def import_plugin(plugin: str, base_dir: str | Path | None = None) -> Any:
    """Import a ``[run] plugins`` entry: a ``.py`` file (relative to ``base_dir``) or a module name.

    A line on stderr names the file or module (and where it was found) before its code runs.
    A module name is never looked up in the current directory (see the module doc).

    Raises:
        ValueError: an entry that is neither a ``.py`` file nor a dotted module name, or a
            path that is not a regular file.
        FileNotFoundError: a ``.py`` file that does not exist.
        IsADirectoryError: a ``.py`` path that is a folder.
        ImportError: a module that cannot be found or imported, or a plugin that raised
            while loading (its error is named and chained).
    """
    if not isinstance(plugin, str) or not plugin:
        raise TypeError(f"[run] plugins entries must be non-empty strings, got {plugin!r}")
    if plugin.endswith(".py"):
        path = Path(plugin).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        return _import_file(path)
    if not all(part.isidentifier() for part in plugin.split(".")):
        raise ValueError(
            f"[run] plugins entry {plugin!r} is neither a module name (like my_package.methods) "
            "nor a .py file (like my_methods.py, relative to the config file)"
        )
    return _import_module(plugin, Path(base_dir) if base_dir is not None else None)
