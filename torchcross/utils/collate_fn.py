"""torchcross 0.0.6's import path: an alias of `torchcross.compat.utils.collate_fn`."""

from torchcross.compat.utils.collate_fn import *  # noqa: F403
from torchcross.compat.utils.collate_fn import __all__ as __all__
