"""torchcross 0.0.6's import path: an alias of `torchcross.compat.cd.metrics.classification`."""

from torchcross.compat.cd.metrics.classification import *  # noqa: F403
from torchcross.compat.cd.metrics.classification import __all__ as __all__
