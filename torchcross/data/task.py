"""torchcross 0.0.6's import path: an alias of `torchcross.compat.data.task`."""

from torchcross.compat.data.task import *  # noqa: F403
from torchcross.compat.data.task import __all__ as __all__
