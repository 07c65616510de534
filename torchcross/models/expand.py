"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.expand`."""

from torchcross.compat.models.expand import *  # noqa: F403
from torchcross.compat.models.expand import __all__ as __all__
