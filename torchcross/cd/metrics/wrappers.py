"""torchcross 0.0.6's import path: an alias of `torchcross.compat.cd.metrics.wrappers`."""

from torchcross.compat.cd.metrics.wrappers import *  # noqa: F403
from torchcross.compat.cd.metrics.wrappers import __all__ as __all__
