"""torchcross 0.0.6's import path: an alias of `torchcross.compat.utils.layers`."""

from torchcross.compat.utils.layers import *  # noqa: F403
from torchcross.compat.utils.layers import __all__ as __all__
