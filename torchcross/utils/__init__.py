"""Small helpers kept at their torchcross 0.0.6 import paths.

:mod:`torchcross.utils.collate_fn` re-exports the collate functions of
:mod:`torchcross.data.collate` (``identity``, ``stack``) for code written for 0.0.6,
such as the ``medimeta`` package.
"""

from __future__ import annotations

from torchcross.utils import collate_fn

__all__ = ["collate_fn"]
