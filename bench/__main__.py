"""``python -m bench``: what ``bench/run`` runs."""

from __future__ import annotations

import sys

from bench.cli import main

sys.exit(main(sys.argv[1:]))
