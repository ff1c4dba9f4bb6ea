"""`python -m gateway` is `alarmgw`."""

import sys

from gateway.cli import main

sys.exit(main())
