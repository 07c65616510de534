"""torchcross 0.0.6's import path: an alias of `torchcross.compat.data.task_source`."""

from torchcross.compat.data.task_source import *  # noqa: F403
from torchcross.compat.data.task_source import __all__ as __all__
