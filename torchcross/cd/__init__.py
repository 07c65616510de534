"""torchcross 0.0.6's import path: an alias of `torchcross.compat.cd`."""

from torchcross.compat.cd import *  # noqa: F403
from torchcross.compat.cd import __all__ as __all__
