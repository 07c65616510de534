"""torchcross 0.0.6's import path: an alias of `torchcross.compat.data.dataset`."""

from torchcross.compat.data.dataset import *  # noqa: F403
from torchcross.compat.data.dataset import __all__ as __all__
