"""torchcross 0.0.6's import path: an alias of `torchcross.compat.data.metadataset.few_shot`."""

from torchcross.compat.data.metadataset.few_shot import *  # noqa: F403
from torchcross.compat.data.metadataset.few_shot import __all__ as __all__
