"""``python -m coordinator.cli``: the ``peergrid`` command."""

import sys

from coordinator.cli import main

sys.exit(main())
