"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.maml`."""

from torchcross.compat.models.maml import *  # noqa: F403
from torchcross.compat.models.maml import __all__ as __all__
