"""The cases, one module per family. Importing this package registers every case, family by
family in the order below: the order of ``--list`` and of a bench run without ``--case``.

Rows: dcmtool first, then the peers. DCMTK programs get TCP_NODELAY=1 (``fixture.NODELAY``).
To add a case, write a function decorated with ``@case(...)`` (see ``bench.harness``) in the
module of its family, or in a new module listed here.
"""

from __future__ import annotations

import importlib

FAMILIES = ("startup", "echo", "serve", "store", "convert", "qr", "retrieve", "dicomdir", "commit",
            "scale")

for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
