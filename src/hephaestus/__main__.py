"""``python -m hephaestus``: the same as the ``hephaestus`` command."""

from __future__ import annotations

import sys

from hephaestus._cli import main

if __name__ == "__main__":
    sys.exit(main())
