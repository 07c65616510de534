"""torchcross 0.0.6's import path: an alias of `torchcross.compat.cd.metrics`."""

from torchcross.compat.cd.metrics import *  # noqa: F403
from torchcross.compat.cd.metrics import __all__ as __all__
