"""torchcross 0.0.6's import path: an alias of `torchcross.compat.utils`."""

import torchcross.utils.collate_fn as collate_fn  # noqa: F401  (this alias module, not compat's)
from torchcross.compat.utils import OversubscriptionWarning as OversubscriptionWarning
from torchcross.compat.utils import __all__ as __all__
from torchcross.compat.utils import available_cpus as available_cpus
from torchcross.compat.utils import configure_threads as configure_threads
from torchcross.compat.utils import recommended_num_threads as recommended_num_threads
from torchcross.compat.utils import to_numpy as to_numpy
