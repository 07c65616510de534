"""torchcross 0.0.6's import path: an alias of `torchcross.compat.cd.losses`."""

from torchcross.compat.cd.losses import *  # noqa: F403
from torchcross.compat.cd.losses import __all__ as __all__
