"""``python -m fastconv ...``: the same as the ``fastconv`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
