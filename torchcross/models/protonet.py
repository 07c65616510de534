"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.protonet`."""

from torchcross.compat.models.protonet import *  # noqa: F403
from torchcross.compat.models.protonet import __all__ as __all__
