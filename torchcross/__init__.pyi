"""Type stub of the root package: its subpackages are imported lazily (``__getattr__`` in
``__init__.py``), so type checkers and IDEs read them from here (``torchcross.data.X`` is typed, not
``Any``), as lazy-loading packages such as SciPy do. ``tests/test_type_checking_exports.py`` keeps this
list equal to ``_SUBMODULES``."""

from typing import Any

from torchcross import cd as cd
from torchcross import cli as cli
from torchcross import compat as compat
from torchcross import data as data
from torchcross import datasets as datasets
from torchcross import distributed as distributed
from torchcross import evaluation as evaluation
from torchcross import learners as learners
from torchcross import lightning as lightning
from torchcross import models as models
from torchcross import nn as nn
from torchcross import protocol as protocol
from torchcross import sampling as sampling
from torchcross import tasks as tasks
from torchcross import threads as threads
from torchcross import utils as utils

__version__: str
__all__: list[str]

def __getattr__(name: str) -> Any: ...
def __dir__() -> list[str]: ...
