"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.lightning.protonet`."""

from torchcross.compat.models.lightning.protonet import *  # noqa: F403
from torchcross.compat.models.lightning.protonet import __all__ as __all__
