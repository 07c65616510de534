"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models.lightning`."""

from torchcross.compat.models.lightning import __all__ as __all__
from torchcross.compat.models.lightning import __dir__ as __dir__
from torchcross.compat.models.lightning import __getattr__ as __getattr__
