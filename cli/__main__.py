"""``python -m cli``: the ``patchwork-gateway`` command."""

import sys

from cli.main import main

sys.exit(main())
