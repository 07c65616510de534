"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.cross_domain`."""

from torchcross.compat.models.cross_domain import *  # noqa: F403
from torchcross.compat.models.cross_domain import __all__ as __all__
