"""torchcross 0.0.6's import path: an alias of `torchcross.compat.cd.activations`."""

from torchcross.compat.cd.activations import *  # noqa: F403
from torchcross.compat.cd.activations import __all__ as __all__
