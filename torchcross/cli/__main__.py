"""``python -m torchcross.cli``: the ``torchcross`` command."""

import sys

from torchcross.cli.app import main

sys.exit(main())
