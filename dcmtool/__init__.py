"""dcmtool: DICOM network utilities.

The package root stays light: importing it must not pull in pydicom, pynetdicom or numpy.
"""

from dcmtool._version import __version__

__all__ = ["__version__"]
