"""torchcross 0.0.6's import path: an alias of `torchcross.compat.cd.heads.classification`."""

from torchcross.compat.cd.heads.classification import *  # noqa: F403
from torchcross.compat.cd.heads.classification import __all__ as __all__
