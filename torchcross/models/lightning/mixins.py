"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.lightning.mixins`."""

from torchcross.compat.models.lightning.mixins import *  # noqa: F403
from torchcross.compat.models.lightning.mixins import __all__ as __all__
