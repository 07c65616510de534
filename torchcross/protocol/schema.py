"""Config sections typed by their annotations: a value is checked and converted as its field declares.

A section is a frozen dataclass. Each field's annotation says what the key accepts: ``int``, ``float``,
``bool``, ``str``, ``Path`` (relative paths resolved against the config file's folder),
``Literal[...]`` (one of the strings), ``tuple[str, ...]`` and ``tuple[int, ...]`` (a list, or one
value), a union with ``None`` (the key may be left unset), ``int | Literal["auto"]`` (a number or a
keyword) and ``Literal[...] | Path`` (a keyword, matched ignoring case, or a path). Bounds are not
types: they stay in the field's metadata, ``field(metadata={"min": 1, "max": 10})``, with
``"distinct": True`` for a list of distinct integers and ``"parse": function(where, value)`` for a
key with its own rules (``[run] device``).

Examples:
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class MyMethodConfig:
    ...     alpha: float = field(default=0.1, metadata={"min": 0.0})
    ...     mode: Literal["fast", "exact"] = "fast"
    >>> section_from_dict("my-method", MyMethodConfig, {"alpha": 1})
    MyMethodConfig(alpha=1.0, mode='fast')
    >>> section_from_dict("my-method", MyMethodConfig, {"beta": 1})
    Traceback (most recent call last):
    ...
    ValueError: unknown key 'beta' in section [my-method]; allowed keys: alpha, mode
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = ["check_section_type", "convert_value", "section_from_dict", "section_values"]

_UNIONS = (Union, types.UnionType)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _parts(hint: Any) -> tuple[bool, tuple[str, ...], list[Any]]:
    """``(optional, literal choices, other types)`` of an annotation."""
    args = get_args(hint) if get_origin(hint) in _UNIONS else (hint,)
    optional = type(None) in args
    literals: list[str] = []
    others: list[Any] = []
    for a in args:
        if a is type(None):
            continue
        if get_origin(a) is Literal:
            literals.extend(get_args(a))
        else:
            others.append(a)
    return optional, tuple(literals), others


def _supported(hint: Any) -> bool:
    _, literals, others = _parts(hint)
    if not all(isinstance(c, str) for c in literals) or len(others) > 1:
        return False
    if not others:
        return bool(literals)
    kind = others[0]
    if literals:
        return kind in (int, Path)
    return kind in (int, float, bool, str, Path) or (
        get_origin(kind) is tuple and get_args(kind)[1:] == (...,) and get_args(kind)[0] in (int, str)
    )


def check_section_type(cls: Any, name: str) -> None:
    """Raise unless ``cls`` is a dataclass whose every field has an annotation `convert_value()` reads.

    Raises:
        TypeError: naming the section, the field and the annotations that are supported.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"the config section [{name}] must be a dataclass type, got {cls!r}")
    try:
        hints = _hints(cls)
    except NameError as exc:
        raise TypeError(
            f"section [{name}] ({cls.__name__}): an annotation cannot be resolved: {exc}"
        ) from None
    for f in dataclasses.fields(cls):
        if "parse" not in f.metadata and not _supported(hints[f.name]):
            raise TypeError(
                f"section [{name}] ({cls.__name__}) key {f.name!r}: annotation {hints[f.name]!r} is not "
                "supported; use int, float, bool, str, Path, Literal[...], tuple[str, ...], tuple[int, ...], "
                "int | Literal[...], Literal[...] | Path, or one of them | None"
            )


def _literal_list(literals: tuple[str, ...]) -> str:
    return " or ".join(f'"{c}"' for c in literals)


def convert_value(
    where: str, value: Any, hint: Any, meta: Mapping[str, Any], base_dir: Path | None = None
) -> Any:
    """``value`` checked and converted as the annotation ``hint`` and the bounds in ``meta`` say.

    Args:
        where: how errors name the key (``"[run] seed"``).
        value: the value read from the file (``None``: left unset).
        hint: the field's annotation (see the module doc).
        meta: the field's metadata: ``min``, ``max``, ``distinct``, ``parse``.
        base_dir: relative paths are resolved against it (``None`` leaves them relative).

    Raises:
        ValueError: a value out of range or not one of the choices, or a required key unset.
        TypeError: a value of the wrong type.
    """
    optional, literals, others = _parts(hint)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where} must be set (got nothing)")
    if "parse" in meta:
        return meta["parse"](where, value)
    kind = others[0] if others else None
    if kind is None:  # only keywords
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {value!r}")
        if value not in literals:
            raise ValueError(f"{where} = {value!r} is not one of {', '.join(literals)}")
        return value
    if literals and kind is Path:  # a keyword beside a path is matched ignoring case and spaces
        if isinstance(value, str) and value.strip().casefold() in literals:
            return value.strip().casefold()
    elif literals:
        if isinstance(value, str) and value in literals:
            return value
        if isinstance(value, (str, bool)) or not isinstance(value, int):
            raise TypeError(f"{where} must be {_literal_list(literals)} or an integer, got {value!r}")
    if get_origin(kind) is tuple:
        return _convert_list(where, value, get_args(kind)[0], meta)
    if kind is Path:
        if not isinstance(value, (str, Path)) or str(value) == "":
            raise TypeError(f"{where} must be a path string, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() or base_dir is None else (base_dir / path)
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"{where} must be a number, got {value!r}")
        value = float(value)
    else:
        raise TypeError(f"{where}: annotation {hint!r} is not supported")
    if "min" in meta and value < meta["min"]:
        raise ValueError(f"{where} must be >= {meta['min']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ValueError(f"{where} must be <= {meta['max']}, got {value!r}")
    return value


def _convert_list(where: str, value: Any, item: type, meta: Mapping[str, Any]) -> tuple[Any, ...]:
    if item is int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        low = meta.get("min")
        distinct = meta.get("distinct", False)
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and (low is None or v >= low) for v in value
            )
            or (distinct and len(set(value)) != len(value))
        ):
            what = "distinct integers" if distinct else "integers"
            bound = f" >= {low}" if low is not None else ""
            raise TypeError(f"{where} must be a non-empty list of {what}{bound}, got {value!r}")
        return tuple(value)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise TypeError(f"{where} must be a non-empty list of strings, got {value!r}")
    return tuple(value)


def section_from_dict(name: str, cls: type, raw: Any, base_dir: Path | None = None) -> Any:
    """The section ``[name]`` of type ``cls`` from ``{key: value}`` (``None``: every default).

    Raises:
        ValueError: an unknown key (named, with the allowed ones), a missing required key, a
            value out of range.
        TypeError: ``raw`` is not a table, or a value of the wrong type.
    """
    return cls(**section_values(name, cls, raw, base_dir))


def section_values(name: str, cls: type, raw: Any, base_dir: Path | None = None) -> dict[str, Any]:
    """The keyword arguments of `section_from_dict()` (the keys given, checked and converted).

    Raises:
        ValueError: an unknown key (named, with the allowed ones), a missing required key, a
            value out of range.
        TypeError: ``raw`` is not a table, or a value of the wrong type.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise TypeError(f"section [{name}] must be a table of key = value, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        keys = (
            "unknown keys " + ", ".join(repr(k) for k in unknown)
            if len(unknown) > 1
            else f"unknown key {unknown[0]!r}"
        )
        raise ValueError(f"{keys} in section [{name}]; allowed keys: {', '.join(fields)}")
    hints = _hints(cls)
    kwargs = {}
    for key, f in fields.items():
        if key in raw:
            kwargs[key] = convert_value(f"[{name}] {key}", raw[key], hints[key], f.metadata, base_dir)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"section [{name}] needs the key {key!r} (see `torchcross run --help`)")
    return kwargs
