"""Loading pynetdicom: lean when only the network is needed, and with dcmtool's fixes applied.

``import pynetdicom`` imports pydicom, whose config imports its pixel-data machinery (numpy,
every installed codec, the decoder registries): about 150 ms here, for a process that will
never decode a pixel. A process that will most likely only talk to the network
(``dcmtool echo``, ``store`` without ``--ts``) calls :func:`load_network_only` first: while
pydicom is imported, numpy and the codecs are hidden and pydicom's pixel modules are stand-ins
that load the real module on first use. If pixels are needed after all (store converting a
file the peer refused as it is), :func:`enable_pixels` gives pydicom numpy and its real pixel
modules. Everything else just imports :mod:`dcmtool.net.association`, which loads the full stack.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

#: Top-level packages a network-only process never needs.
PIXEL_PACKAGES = frozenset(
    {"numpy", "pylibjpeg", "openjpeg", "libjpeg", "rle", "PIL", "gdcm", "jpeg_ls", "pyjpegls",
     "imagecodecs"}
)

#: pydicom's pixel modules that its core imports at start-up (pydicom 3.0).
PYDICOM_PIXEL_MODULES = (
    "pydicom.pixels",
    "pydicom.pixels.utils",
    "pydicom.pixel_data_handlers",
    "pydicom.pixel_data_handlers.numpy_handler",
    "pydicom.pixel_data_handlers.rle_handler",
    "pydicom.pixel_data_handlers.pillow_handler",
    "pydicom.pixel_data_handlers.jpeg_ls_handler",
    "pydicom.pixel_data_handlers.gdcm_handler",
    "pydicom.pixel_data_handlers.pylibjpeg_handler",
    "pydicom.waveforms.numpy_handler",
    "pydicom.examples",  # loads pydicom.data, and with it urllib, http and ssl
)


class _HidePixelPackages(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in PIXEL_PACKAGES:
            raise ModuleNotFoundError(f"{fullname} is not loaded by dcmtool's network-only mode",
                                      name=fullname)
        return None


class _DeferredModule(types.ModuleType):
    """Stands in for a pixel module: names imported from it are functions that load the
    real module on their first call; any other use loads it at once."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        module_name = self.__name__
        child = sys.modules.get(f"{module_name}.{name}")
        if child is not None:
            return child

        def deferred(*args: Any, **kwargs: Any) -> Any:
            return getattr(_real(module_name), name)(*args, **kwargs)

        deferred.__name__ = name
        return deferred


def _real(name: str) -> types.ModuleType:
    """Replace the stand-ins by pydicom's real modules (numpy allowed from now on)."""
    for stub in PYDICOM_PIXEL_MODULES:
        if isinstance(sys.modules.get(stub), _DeferredModule):
            del sys.modules[stub]
    return importlib.import_module(name)


def load_network_only() -> None:
    """Import pynetdicom without numpy, pixel codecs or pydicom's pixel machinery.

    Only for short-lived processes that never touch pixel data: pydicom decides at import time
    whether numpy exists, so pixel decoding stays unavailable for the rest of the process.
    Does nothing when pydicom is already loaded.
    """
    global _network_only
    if "pydicom" in sys.modules:
        return
    _network_only = True
    finder = _HidePixelPackages()
    sys.meta_path.insert(0, finder)
    stubs = {name: _DeferredModule(name) for name in PYDICOM_PIXEL_MODULES}
    for name, stub in stubs.items():
        stub.__path__ = []  # a package, so that "import pkg.sub as x" finds sub in sys.modules
        sys.modules[name] = stub
    try:
        import pynetdicom  # noqa: F401
    finally:
        sys.meta_path.remove(finder)
    for name, stub in stubs.items():  # "pydicom.examples" works as an attribute, as usual
        parent, _, child = name.rpartition(".")
        if sys.modules.get(parent) is not None and not hasattr(sys.modules[parent], child):
            setattr(sys.modules[parent], child, stub)


#: Whether pydicom was imported by load_network_only (without numpy).
_network_only = False
_enabling = threading.Lock()


def enable_pixels() -> None:
    """Pixel data usable again after :func:`load_network_only` (does nothing otherwise).

    pydicom 3.0 records at import time whether numpy exists (config, values, dataelem,
    filewriter, dataset, the overlay handler); they are told it does, and the pixel stand-ins
    are replaced by the real modules, which import numpy and the codecs now. A test converts
    files in a process that started network-only.
    """
    global _network_only
    with _enabling:
        if _network_only:
            _enable_pixels()
            _network_only = False


def _enable_pixels() -> None:
    import numpy
    import pydicom.config
    import pydicom.dataelem
    import pydicom.dataset
    import pydicom.filewriter
    import pydicom.values

    pydicom.config.have_numpy = True
    pydicom.values.have_numpy = True  # type: ignore[attr-defined]
    for module in (pydicom.values, pydicom.dataelem, pydicom.filewriter, pydicom.dataset):
        module.numpy = numpy  # type: ignore[attr-defined]
    overlays = sys.modules.get("pydicom.overlays.numpy_handler")
    if overlays is not None:
        overlays.HAVE_NP = True  # type: ignore[attr-defined]
        overlays.np = numpy  # type: ignore[attr-defined]
    _real("pydicom.pixels")
    handlers = [importlib.import_module(f"pydicom.pixel_data_handlers.{name}") for name in (
        "numpy_handler", "gdcm_handler", "pillow_handler", "jpeg_ls_handler",
        "pylibjpeg_handler", "rle_handler")]  # pydicom.config's order
    pydicom.config.pixel_data_handlers = handlers
    for name in ("pydicom.pixels", "pydicom.pixel_data_handlers",
                 "pydicom.waveforms.numpy_handler"):
        parent, _, child = name.rpartition(".")
        module = importlib.import_module(name)
        setattr(sys.modules[parent], child, module)


__all__: Sequence[str] = ("enable_pixels", "load_network_only")
