"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.lightning.simple`."""

from torchcross.compat.models.lightning.simple import *  # noqa: F403
from torchcross.compat.models.lightning.simple import __all__ as __all__
