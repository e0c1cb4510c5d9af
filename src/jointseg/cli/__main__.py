"""``python -m jointseg.cli``."""

import sys

from jointseg.cli import main

sys.exit(main())
