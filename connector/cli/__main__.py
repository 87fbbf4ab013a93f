"""``python -m connector.cli``: the ``misync`` command."""

import sys

from connector.cli import main

if __name__ == "__main__":
    sys.exit(main())
