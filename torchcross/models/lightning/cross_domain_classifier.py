"""The 0.0.6 import path: an alias of `torchcross.compat.models.lightning.cross_domain_classifier`."""

from torchcross.compat.models.lightning.cross_domain_classifier import *  # noqa: F403
from torchcross.compat.models.lightning.cross_domain_classifier import __all__ as __all__
