"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.optimizers`."""

from torchcross.compat.models.optimizers import *  # noqa: F403
from torchcross.compat.models.optimizers import __all__ as __all__
