"""``python -m tests.chaos --duration 600 --workers 3 --bots 6 --seed N``."""

import sys

from tests.chaos.driver import main

sys.exit(main())
