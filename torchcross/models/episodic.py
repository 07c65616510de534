"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.episodic`."""

from torchcross.compat.models.episodic import *  # noqa: F403
from torchcross.compat.models.episodic import __all__ as __all__
