"""torchcross 0.0.6's import path: an alias of `torchcross.compat.models`."""

from torchcross.compat.models import __all__ as __all__
from torchcross.compat.models import __dir__ as __dir__
from torchcross.compat.models import __getattr__ as __getattr__
