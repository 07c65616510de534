"""Read torchcross 0.0.6 optimiser arguments as torchcross inner optimisers.

0.0.6 took optimiser *factories*: ``inner_optimizer=partial(torchopt.MetaSGD, lr=0.1)`` (called
on the network) and ``eval_inner_optimizer=partial(torch.optim.SGD, lr=0.1)`` (called on its
parameters). `inner_optimizer_spec()` turns such a factory into the learning rate and the
``lr -> InnerOptimizer`` callable that [`MAML`][torchcross.learners.maml.MAML] takes, without
importing ``torchopt``.

Accepted: ``functools.partial`` of a class or function named ``SGD``/``MetaSGD`` or ``Adam``/``MetaAdam``
(torch.optim or torchopt) with keyword arguments, those classes themselves (their default learning rate,
1e-3), a [`torchcross.learners.SGD`][SGD] or
[`torchcross.learners.Adam`][Adam], or any callable that returns a
``torch.optim.SGD`` or ``torch.optim.Adam`` when called with a list of parameters.

Examples:
    >>> from functools import partial
    >>> import torch
    >>> lr, make = inner_optimizer_spec(
    ...     partial(torch.optim.SGD, lr=0.1, momentum=0.9), "eval_inner_optimizer"
    ... )
    >>> lr, make(lr)
    (0.1, SGD(lr=0.1, momentum=0.9, weight_decay=0.0))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchcross.learners.inner_optimizers import SGD, Adam

__all__ = ["inner_optimizer_spec"]

_SGD_NAMES = ("SGD", "MetaSGD", "sgd")
_ADAM_NAMES = ("Adam", "MetaAdam", "adam")
_DEFAULT_LR = 1e-3
_UNSUPPORTED = {
    "nesterov": False,
    "dampening": 0.0,
    "maximize": False,
    "amsgrad": False,
    "moment_requires_grad": None,
    "use_accelerated_op": None,
    "foreach": None,
    "fused": None,
    "capturable": None,
    "differentiable": None,
    "decoupled_weight_decay": False,
}


def _build(name: str, kwargs: dict[str, Any], what: str) -> SGD | Adam:
    kwargs = dict(kwargs)
    for key, neutral in _UNSUPPORTED.items():
        value = kwargs.pop(key, neutral)
        if neutral is not None and value != neutral:
            raise ValueError(f"{what}: {key}={value!r} is not supported; torchcross's inner {name} has none")
    lr = kwargs.pop("lr", _DEFAULT_LR)
    keys = ("momentum", "weight_decay") if name in _SGD_NAMES else ("betas", "eps", "weight_decay")
    options = {k: kwargs.pop(k) for k in keys if k in kwargs}
    if kwargs:
        raise ValueError(f"{what}: unsupported arguments {sorted(kwargs)} for an inner {name}")
    if name in _SGD_NAMES:
        return SGD(lr, **options)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return Adam(lr, **options)


def _name(func: Any) -> str:
    return getattr(func, "__name__", type(func).__name__)


def inner_optimizer_spec(factory: Any, what: str) -> tuple[float, Callable[[Any], SGD | Adam]]:
    """``(learning rate, lr -> InnerOptimizer)`` for a 0.0.6 optimiser factory (see module doc).

    Args:
        factory: the 0.0.6 argument (e.g. ``partial(torchopt.MetaSGD, lr=0.1)``).
        what: the argument's name, for error messages.

    Raises:
        ValueError: an optimiser or an option torchcross's inner loops do not have.
        TypeError: a factory that cannot be read.
    """
    if isinstance(factory, (SGD, Adam)):
        opt: SGD | Adam = factory
    elif isinstance(factory, functools.partial) and _name(factory.func) in _SGD_NAMES + _ADAM_NAMES:
        if len(factory.args) > 0:
            raise TypeError(
                f"{what}: pass the optimiser's options as keywords, got positional {factory.args!r}"
            )
        opt = _build(_name(factory.func), factory.keywords, what)
    elif isinstance(factory, type) and factory.__name__ in _SGD_NAMES + _ADAM_NAMES:
        opt = _build(factory.__name__, {}, what)
    elif callable(factory):
        try:
            made = factory([nn.Parameter(torch.zeros(1))])
        except Exception as err:
            raise TypeError(
                f"{what} must be e.g. partial(torch.optim.SGD, lr=0.1), partial(torchopt.MetaSGD, lr=0.1) "
                f"or a torchcross.learners.SGD/Adam; calling {factory!r} on parameters failed: {err}"
            ) from err
        if type(made) not in (torch.optim.SGD, torch.optim.Adam):
            raise ValueError(
                f"{what} builds a {type(made).__name__}; torchcross's inner loops run SGD or Adam only"
            )
        defaults = {
            k: v for k, v in made.defaults.items() if k in ("lr", "momentum", "weight_decay", "betas", "eps")
        }
        defaults.update({k: made.defaults[k] for k in _UNSUPPORTED if k in made.defaults})
        opt = _build(type(made).__name__, defaults, what)
    else:
        raise TypeError(f"{what} must be an optimiser factory, got {type(factory).__name__}: {factory!r}")
    lr = float(opt.lr)  # type: ignore[arg-type]
    return lr, lambda rate: dataclasses.replace(opt, lr=rate)
