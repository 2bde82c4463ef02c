"""``python -m bench SCENARIO [...]``: the same as ``dockcast bench``."""

import sys

from .cli import main

sys.exit(main())
