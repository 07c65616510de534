"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.simple`."""

from torchcross.compat.models.simple import *  # noqa: F403
from torchcross.compat.models.simple import __all__ as __all__
