"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.lightning.episodic`."""

from torchcross.compat.models.lightning.episodic import *  # noqa: F403
from torchcross.compat.models.lightning.episodic import __all__ as __all__
