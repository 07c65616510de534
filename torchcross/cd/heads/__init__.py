"""torchcross 0.0.6's import path: an alias of `torchcross.compat.cd.heads`."""

from torchcross.compat.cd.heads import *  # noqa: F403
from torchcross.compat.cd.heads import __all__ as __all__
