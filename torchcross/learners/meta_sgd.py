"""Meta-SGD: learned inner learning rates stored next to the parameters they belong to.

A learner's meta-parameters are one flat dict: the parameters by name, and the learning rate of parameter
``name`` under ``"lr." + name`` (`META_SGD_PREFIX`).
[`split_meta_sgd_rates()`][split_meta_sgd_rates] separates the two for the inner
loop; [`with_meta_sgd_rates()`][with_meta_sgd_rates] builds the dict. Modules
store the rates in an ``nn.ParameterDict``, whose keys cannot contain ``"."``:
[`meta_sgd_key()`][meta_sgd_key] is the key of a parameter's rate there, and
[`init_meta_sgd_rates()`][init_meta_sgd_rates] the starting rates.

Examples:
    >>> import torch
    >>> rates = init_meta_sgd_rates({"backbone.w": torch.zeros(2)}, ["head.weight"], 0.1)
    >>> {k: v.tolist() for k, v in rates.items()}
    {'backbone__w': [0.1, 0.1], 'head__weight': 0.1}
    >>> meta = with_meta_sgd_rates({"backbone.w": torch.zeros(2)}, rates, ["backbone.w", "head.weight"])
    >>> sorted(meta)
    ['backbone.w', 'lr.backbone.w', 'lr.head.weight']
    >>> params, lrs = split_meta_sgd_rates(meta)
    >>> sorted(params), sorted(lrs)
    (['backbone.w'], ['backbone.w', 'head.weight'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "META_SGD_PREFIX",
    "init_meta_sgd_rates",
    "meta_sgd_key",
    "split_meta_sgd_rates",
    "with_meta_sgd_rates",
]

ParamDict = dict[str, Tensor]
META_SGD_PREFIX = "lr."
"""The learning rate of parameter ``name`` is stored under ``META_SGD_PREFIX + name``."""


def meta_sgd_key(name: str) -> str:
    """The ``nn.ParameterDict`` key of parameter ``name``'s learning rate (``"."`` becomes ``"__"``).

    Examples:
        >>> meta_sgd_key("backbone.layers.0.weight")
        'backbone__layers__0__weight'
    """
    return name.replace(".", "__")


def init_meta_sgd_rates(
    params: Mapping[str, Tensor], scalar_names: Sequence[str], inner_lr: float
) -> dict[str, Tensor]:
    """Starting rates, all ``inner_lr``, keyed by
    [`meta_sgd_key()`][meta_sgd_key].

    Every tensor of ``params`` gets per-element rates of its shape; every name in
    ``scalar_names`` (parameters whose shape changes between tasks, such as a head) one
    scalar rate. Rates take the dtype and device of the first tensor of ``params``.

    Raises:
        ValueError: two names share a key once ``"."`` is replaced by ``"__"``.
    """
    rates = {meta_sgd_key(name): torch.full_like(p.detach(), inner_lr) for name, p in params.items()}
    like = next(iter(params.values()), torch.zeros(()))
    for name in scalar_names:
        rates[meta_sgd_key(name)] = torch.full((), inner_lr, dtype=like.dtype, device=like.device)
    names = [*params, *scalar_names]
    if len(rates) != len(names):
        keys = [meta_sgd_key(n) for n in names]
        clashes = sorted({n for n in names if keys.count(meta_sgd_key(n)) > 1})
        raise ValueError(
            f"parameter names {clashes} collide once '.' is replaced by '__' (Meta-SGD rate keys); "
            "rename them"
        )
    return rates


def with_meta_sgd_rates(
    params: Mapping[str, Tensor], rates: Mapping[str, Tensor], names: Iterable[str]
) -> ParamDict:
    """``params`` plus ``"lr." + name -> rates[meta_sgd_key(name)]`` for every name in ``names``."""
    out = dict(params)
    for name in names:
        out[META_SGD_PREFIX + name] = rates[meta_sgd_key(name)]
    return out


def split_meta_sgd_rates(meta: Mapping[str, Tensor]) -> tuple[ParamDict, ParamDict]:
    """``(parameters, learning rates by parameter name)`` of a dict built by
    [`with_meta_sgd_rates()`][with_meta_sgd_rates]."""
    params = {k: v for k, v in meta.items() if not k.startswith(META_SGD_PREFIX)}
    rates = {k[len(META_SGD_PREFIX) :]: v for k, v in meta.items() if k.startswith(META_SGD_PREFIX)}
    return params, rates
