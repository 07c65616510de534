"""Argument checks shared across torchcross: one wording for every integer argument and generator."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

import numpy as np

__all__ = ["IntTypeError", "check_generator", "check_int", "renamed_keywords"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class IntTypeError(TypeError, ValueError):
    """A value that is not an integer where one is needed.

    A ``TypeError``; also a ``ValueError``, which some torchcross 0.1.0 checks raised,
    so ``except ValueError`` written against those keeps working.
    """


@overload
def check_int(value: Any, name: str, minimum: int | None = None) -> int: ...
@overload
def check_int(
    value: Any, name: str, minimum: int | None = None, *, allow_none: bool, why: str = ""
) -> int | None: ...
@overload
def check_int(value: Any, name: str, minimum: int | None = None, *, why: str) -> int: ...


def check_int(
    value: Any, name: str, minimum: int | None = None, *, allow_none: bool = False, why: str = ""
) -> int | None:
    """``value`` as a Python ``int``; a clear error naming ``name`` otherwise.

    Python and NumPy integers are accepted, ``bool`` is not. ``why`` explains the minimum.

    Raises:
        IntTypeError: ``value`` is not an integer (nor ``None`` with ``allow_none``).
        ValueError: ``value < minimum``.

    Examples:
        >>> check_int(np.int64(3), "n_way", 2)
        3
        >>> check_int(1, "n_way", 2, why=" (a task needs two classes)")
        Traceback (most recent call last):
        ...
        ValueError: n_way must be >= 2 (a task needs two classes), got n_way=1
        >>> check_int(2.0, "batch_size", 1)
        Traceback (most recent call last):
        ...
        torchcross._checks.IntTypeError: batch_size must be an int, got float: 2.0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        kind = "an int or None" if allow_none else "an int"
        raise IntTypeError(f"{name} must be {kind}, got {type(value).__name__}: {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}{why}, got {name}={value}")
    return int(value)


def check_generator(rng: Any) -> np.random.Generator:
    """``rng`` itself if it is a `numpy.random.Generator`; a ``TypeError`` naming the fix otherwise.

    Examples:
        >>> check_generator(np.random.default_rng(0)).random() < 1
        True
        >>> check_generator(0)
        Traceback (most recent call last):
        ...
        TypeError: rng must be a numpy.random.Generator, got int; use numpy.random.default_rng(seed)
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
            "use numpy.random.default_rng(seed)"
        )
    return rng


def renamed_keywords(**renames: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Keep the former keyword names of a function's parameters working, with a ``DeprecationWarning``.

    ``@renamed_keywords(n_support="n_shot")``: a call with ``n_support=2`` warns and runs as
    ``n_shot=2``; passing both names is a ``TypeError``. Type checkers see the new signature only.

    Examples:
        >>> import warnings
        >>> @renamed_keywords(n_support="n_shot")
        ... def f(n_shot: int) -> int:
        ...     return n_shot
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     f(n_support=3), str(caught[0].message)
        (3, 'f(n_support=...) is deprecated: use n_shot=...')
    """

    def decorate(function: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(function)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{function.__name__}() got both {old}= and {new}=; {old} is the former name of "
                            f"{new}: pass {new} only"
                        )
                    warnings.warn(
                        f"{function.__name__}({old}=...) is deprecated: use {new}=...",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate
