"""Allow ``python -m ecmlib <command>``."""

import sys

from .cli import main

sys.exit(main())
