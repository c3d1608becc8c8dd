"""DICOM media (PS3.10, PS3.11): file sets with a DICOMDIR, written and read.

Encoding only, no sockets: the CLI retrieves what a file set should hold with the SCUs and
hands the files to this package.

* ``profiles``: the Media Storage Application Profiles (which syntaxes, what converts to what).
* ``export``: ``create`` and ``add`` (FSC, FSU): check, copy or convert, write the DICOMDIR.
* ``directory``: the DICOMDIR itself: ``write_dicomdir``, ``read_tree``, ``verify``.
* ``scan``, ``plan``, ``records``: reading the inputs, laying out the file set, the records'
  keys (from pydicom's ``DIRECTORY_RECORDERS``).
"""
