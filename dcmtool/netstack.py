"""Loading pynetdicom: lean when only the network is needed, and with dcmtool's fixes applied.

``import pynetdicom`` pulls in pydicom's pixel handlers, which import numpy and probe every
installed pixel codec (about 100 ms here). A process that only talks to the network
(``dcmtool echo``) calls :func:`load_network_only` first: numpy and the codecs are hidden while
pydicom is imported, so pydicom records them as unavailable *in that process only*.
Everything else just imports :mod:`dcmtool.association`, which loads the full stack.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

#: Top-level packages a network-only process never needs.
PIXEL_PACKAGES = frozenset(
    {"numpy", "pylibjpeg", "openjpeg", "libjpeg", "rle", "PIL", "gdcm", "jpeg_ls", "pyjpegls",
     "imagecodecs"}
)


class _HidePixelPackages(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in PIXEL_PACKAGES:
            raise ModuleNotFoundError(f"{fullname} is not loaded by dcmtool's network-only mode",
                                      name=fullname)
        return None


def load_network_only() -> None:
    """Import pynetdicom without numpy or pixel codecs, unless pydicom is already loaded.

    Only for short-lived processes that never touch pixel data: pydicom decides at import time
    whether numpy exists, so pixel decoding stays unavailable for the rest of the process.
    """
    if "pydicom" in sys.modules:
        return
    finder = _HidePixelPackages()
    sys.meta_path.insert(0, finder)
    try:
        import pynetdicom  # noqa: F401
    finally:
        sys.meta_path.remove(finder)
    from dcmtool import _pynetdicom_fixes

    _pynetdicom_fixes.apply()
