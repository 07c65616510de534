"""Weights on disk: read a state dict safely, name what does not fit, and digest the files.

Examples:
    >>> from torch import nn
    >>> err = weights_mismatch(nn.Linear(2, 3), {"weight": torch.zeros(4, 2)}, "w.pth")
    >>> print(err)  # doctest: +NORMALIZE_WHITESPACE
    weights in 'w.pth' do not fit the backbone: missing keys ['bias'];
    shape mismatches ['weight': (4, 2) in the file, (3, 2) in the model]
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["digest_files", "read_state_dict", "require", "weight_files", "weights_mismatch"]

_SHOWN = 5
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise an ImportError naming ``pip install "torchcross[<extra>]"``.

    Examples:
        >>> require("math", "none").sqrt(4.0)
        2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'this backbone needs the {module!r} package; install it with `pip install "torchcross[{extra}]"`'
        ) from exc


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file or a ``torch.save`` file (read with ``weights_only=True``).

    A checkpoint that wraps its weights (``{"state_dict": ...}``, ``{"model": ...}``) is unwrapped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be read, or holds no dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist (or is not a file)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"could not read weights from {str(path)!r}: {exc}") from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{str(path)!r} must hold a state_dict (a dict of tensors), got {type(state).__name__}"
        )
    return state


def weights_mismatch(
    module: nn.Module, state: Mapping[str, Tensor], source: str, ignore: Iterable[str] = ()
) -> ValueError | None:
    """A ValueError naming the first missing, unexpected and mismatched keys, or None if ``state`` fits.

    Args:
        module: the model the weights are meant for.
        state: the weights.
        source: where they come from (a file name), for the message.
        ignore: key prefixes left out of the comparison (a classifier head that was removed).
    """
    prefixes = tuple(ignore)
    own = {k: v for k, v in module.state_dict().items() if not (prefixes and k.startswith(prefixes))}
    given = {k: v for k, v in state.items() if not (prefixes and k.startswith(prefixes))}
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    shapes = sorted(
        f"{k!r}: {tuple(given[k].shape)} in the file, {tuple(own[k].shape)} in the model"
        for k in set(own) & set(given)
        if tuple(given[k].shape) != tuple(own[k].shape)
    )
    parts = []
    for what, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if keys:
            more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
            shown = ", ".join(keys[:_SHOWN]) if what == "shape mismatches" else repr(keys[:_SHOWN])[1:-1]
            parts.append(f"{what} [{shown}]{more}")
    if not parts:
        return None
    return ValueError(f"weights in {source!r} do not fit the backbone: {'; '.join(parts)}")


def digest_files(paths: Iterable[str | Path]) -> str:
    """``"sha256:<hex>"`` of the files' names and contents, in name order: the weights' identity.

    Examples:
        >>> digest_files([])[:10]
        'sha256:e3b'
    """
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return f"sha256:{h.hexdigest()}"


def weight_files(folder: Path) -> list[Path]:
    """The weight files directly in ``folder`` (``.safetensors``, ``.bin``, ``.pth``, ``.pt``, ``.ckpt``)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
