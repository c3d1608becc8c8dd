"""dcmtool: DICOM network utilities.

The package root stays light: importing it must not pull in pydicom, pynetdicom or numpy.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dcmtool")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
