"""The bundle's entry point: exactly what the `bastion` console script runs."""

import sys

from bastion.tui.launch import main

if __name__ == "__main__":
    sys.exit(main())
