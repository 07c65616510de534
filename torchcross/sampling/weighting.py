"""How often each task is drawn when one stream mixes many tasks.

Four policies, applied to the tasks' sizes (their number of batches or episodes):

==================  =====================================================
``"proportional"``  ``p_i ~ n_i`` (every item equally likely)
``"uniform"``       ``p_i = 1 / K`` (every task equally likely)
``"temperature"``   ``p_i ~ n_i ** (1 / T)``: ``T = 1`` is proportional,
                    large ``T`` approaches uniform
``"explicit"``      ``p_i ~ w_i`` for given positive weights
==================  =====================================================

[`resolve_weighting()`][resolve_weighting] validates a policy once;
[`TaskWeighting.weights()`][TaskWeighting.weights]
evaluates it for given sizes (sizes of zero get weight zero), and
[`sampling_probabilities()`][sampling_probabilities] is the one-call form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TaskWeighting", "WEIGHTINGS", "resolve_weighting", "sampling_probabilities"]

WEIGHTINGS: tuple[str, ...] = ("proportional", "uniform", "temperature", "explicit")
_ALIASES = {"size": "proportional", "sizes": "proportional", "proportional": "proportional"}


@dataclass(frozen=True)
class TaskWeighting:
    """A validated weighting policy for ``len(explicit)``-or-any number of tasks.

    Attributes:
        kind: one of `WEIGHTINGS`.
        temperature: ``T`` of the ``"temperature"`` policy, else ``None``.
        explicit: per-task weights of the ``"explicit"`` policy, else ``None``.
    """

    kind: str
    temperature: float | None = None
    explicit: tuple[float, ...] | None = None

    def weights(self, sizes: Any) -> np.ndarray:
        """Unnormalised float64 weights for tasks of ``sizes``; zero where a size is zero."""
        n = np.asarray(sizes, dtype=np.float64)
        alive = n > 0
        if self.kind == "proportional":
            w = n.copy()
        elif self.kind == "uniform":
            w = np.ones_like(n)
        elif self.kind == "explicit":
            w = np.asarray(self.explicit, dtype=np.float64)
        else:  # temperature, in log space so that large sizes and small T do not overflow
            logw = np.full_like(n, -np.inf)
            logw[alive] = np.log(n[alive]) / self.temperature
            w = np.exp(logw - logw[alive].max()) if alive.any() else np.zeros_like(n)
        return np.where(alive, w, 0.0)

    def fingerprint(self) -> dict[str, Any]:
        """A plain-data description, for state dicts."""
        explicit = None if self.explicit is None else list(self.explicit)
        return {"kind": self.kind, "temperature": self.temperature, "explicit": explicit}


def resolve_weighting(
    num_tasks: int,
    weighting: str | None = None,
    *,
    temperature: float | None = None,
    weights: Mapping[str, float] | Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> TaskWeighting:
    """Validate a weighting policy for ``num_tasks`` tasks called ``names``.

    Args:
        num_tasks: the number of tasks.
        weighting: ``"proportional"`` (alias ``"size"``), ``"uniform"``, ``"temperature"``
            or ``"explicit"``; default ``"explicit"`` when ``weights`` is given, else
            ``"proportional"``.
        temperature: ``T > 0`` for ``"temperature"``.
        weights: positive weights for ``"explicit"``: a sequence in task order, or a
            mapping from task name to weight naming every task.
        names: the tasks' names (keys for a ``weights`` mapping).

    Raises:
        ValueError: for an unknown policy, a missing or non-positive temperature, weights
            that are not finite and positive, or a mapping whose keys are not exactly the
            task names (the message lists the unknown and the missing names).
        TypeError: for weights of the wrong type.

    Examples:
        >>> resolve_weighting(2, "temperature", temperature=2.0).weights([1, 4])
        array([0.5, 1. ])
        >>> resolve_weighting(2, weights={"b": 3, "a": 1}, names=["a", "b"]).explicit
        (1.0, 3.0)
    """
    if weighting is None:
        weighting = "explicit" if weights is not None else "proportional"
    if not isinstance(weighting, str):
        raise TypeError(f"weighting must be a str, one of {list(WEIGHTINGS)}; got {weighting!r}")
    kind = _ALIASES.get(weighting.lower(), weighting.lower())
    if kind not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; use one of {list(WEIGHTINGS)}")
    if kind != "temperature" and temperature is not None:
        raise ValueError(f"temperature={temperature!r} only applies to weighting='temperature', not {kind!r}")
    if kind != "explicit" and weights is not None:
        raise ValueError(f"weights only apply to weighting='explicit', not {kind!r}; drop one of them")
    if kind == "temperature":
        if temperature is None:
            raise ValueError("weighting='temperature' needs temperature=T (T > 0; 1 is proportional)")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"temperature must be a number, got {temperature!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
        return TaskWeighting(kind, temperature=float(temperature))
    if kind == "explicit":
        if weights is None:
            raise ValueError("weighting='explicit' needs weights= (a list or a {task name: weight} dict)")
        return TaskWeighting(kind, explicit=_explicit_weights(num_tasks, weights, names))
    return TaskWeighting(kind)


def _explicit_weights(num_tasks: int, weights: Any, names: Sequence[str] | None) -> tuple[float, ...]:
    names = [str(i) for i in range(num_tasks)] if names is None else list(names)
    if isinstance(weights, Mapping):
        if len(set(names)) != len(names):
            raise ValueError(
                f"task names are not unique ({names}), so weights cannot be keyed by name; "
                "name the tasks (pass them as a dict) or give weights as a list in task order"
            )
        unknown = [k for k in weights if k not in names]
        missing = [n for n in names if n not in weights]
        if unknown or missing:
            raise ValueError(
                f"weights must name every task exactly: unknown tasks {unknown}, missing tasks {missing}; "
                f"the tasks are {names}"
            )
        values = [(n, weights[n]) for n in names]
    elif isinstance(weights, (Sequence, np.ndarray)) and not isinstance(weights, str):
        if len(weights) != num_tasks:
            raise ValueError(f"got {len(weights)} weights for {num_tasks} tasks {names}; give one per task")
        values = list(zip(names, weights))
    else:
        raise TypeError(f"weights must be a sequence or a mapping, got {type(weights).__name__}")
    out = []
    for name, w in values:
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
            raise TypeError(f"weight of task {name!r} must be a number, got {w!r}")
        if not (math.isfinite(float(w)) and w > 0):
            raise ValueError(
                f"weight of task {name!r} must be finite and > 0, got {w!r}; leave the task out to skip it"
            )
        out.append(float(w))
    return tuple(out)


def sampling_probabilities(
    sizes: Sequence[int],
    weighting: str | None = None,
    *,
    temperature: float | None = None,
    weights: Mapping[str, float] | Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Per-task probabilities (float64, summing to one) of a policy for tasks of ``sizes``.

    Raises:
        ValueError: for no tasks, a size below one, or an invalid policy (see
            [`resolve_weighting()`][resolve_weighting]).

    Examples:
        >>> sampling_probabilities([10, 30], "proportional")
        array([0.25, 0.75])
        >>> sampling_probabilities([10, 30], "uniform")
        array([0.5, 0.5])
        >>> sampling_probabilities([1, 100], "temperature", temperature=2.0).round(3)
        array([0.091, 0.909])
    """
    sizes_arr = np.asarray(sizes)
    if sizes_arr.ndim != 1 or len(sizes_arr) == 0:
        raise ValueError(f"sizes must be a non-empty 1-d sequence, got {sizes!r}")
    bad = [i for i, s in enumerate(sizes_arr.tolist()) if not (isinstance(s, int) and s >= 1)]
    if bad:
        who = [names[i] if names is not None else i for i in bad]
        raise ValueError(f"every task needs a size >= 1 (an integer); tasks {who} have sizes {sizes!r}")
    policy = resolve_weighting(
        len(sizes_arr), weighting, temperature=temperature, weights=weights, names=names
    )
    w = policy.weights(sizes_arr)
    return w / w.sum()
