"""`python -m gateway.drivers.modem`: the shell tool in `gateway.drivers.modem.tool`."""

import sys

from gateway.drivers.modem.tool import main

if __name__ == "__main__":
    sys.exit(main())
