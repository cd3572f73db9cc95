"""``python -m fixedmodel``: the ``fixedmodel`` command line (see :mod:`fixedmodel.cli`)."""

from __future__ import annotations

import sys

from fixedmodel.cli import main

if __name__ == "__main__":
    sys.exit(main())
