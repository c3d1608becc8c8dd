"""Fix 3: received data sets stream into the archive's own folder.

With chunked receive on, pynetdicom writes each C-STORE data set to a temporary file in the
system temp dir, behind File Meta Information that names pynetdicom. For an AE whose hooks name
an ``incoming`` folder, the file goes there instead (same file system as the archive, so it
can be renamed into place) and its meta names dcmtool and the sending AE title (PS3.10 7.1).

A write that fails there (the disk is full) must not reach pynetdicom, whose state machine
would abort the association with the file left behind: the file is removed at once, the rest
of the data set is read and discarded, and the handler answers 0xA700 (``IncomingFile``).
The same happens, before the disk is full, when writing on would leave less free than the
archive's minimum (``AeHooks.min_free_bytes``): the free space is checked every few MiB
written, so an instance larger than the space left never fills the disk.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from typing import Any

from dcmtool.net import space
from dcmtool.net.links import ae_hooks
from dcmtool.net.patches._replace import replace

_receiving = threading.local()


class IncomingFile:
    """The file a data set streams into, which never raises: after a failed write the partial
    file is removed and the rest discarded; ``failure`` says why."""

    CHECK_EVERY = space.CHECK_EVERY

    def __init__(self, inner: Any, min_free: int = 0) -> None:
        self._inner = inner
        self.name: str = inner.name
        self.failure: OSError | None = None
        self._min_free = min_free
        self._unchecked = 0

    @property
    def file(self) -> IncomingFile:  # pynetdicom calls ``.file.flush()``
        return self

    def write(self, data: Any) -> int:
        if self.failure is None:
            try:
                self._inner.write(data)
                self._unchecked += len(data)
                if self._min_free and self._unchecked >= self.CHECK_EVERY:
                    self._unchecked = 0
                    self._check_free_space()
            except OSError as exc:
                self._discard(exc)
        return len(data)

    def _check_free_space(self) -> None:
        problem = space.below_minimum(os.path.dirname(self.name), self._min_free)
        if problem is not None:
            raise problem

    def flush(self) -> None:
        if self.failure is None:
            try:
                self._inner.flush()
            except OSError as exc:
                self._discard(exc)

    def close(self) -> None:
        if self.failure is None:
            try:
                self._inner.close()
            except OSError as exc:
                self._discard(exc)

    def _discard(self, exc: OSError) -> None:
        self.failure = exc
        with contextlib.suppress(OSError):
            self._inner.close()  # may fail again flushing its buffer: the file goes anyway
        with contextlib.suppress(OSError):
            os.unlink(self.name)


def _incoming_dir() -> Any:
    assoc = getattr(_receiving, "assoc", None)
    hooks = ae_hooks(getattr(assoc, "ae", None))
    return None if hooks is None or hooks.incoming is None else str(hooks.incoming)


def apply() -> None:
    from pynetdicom import dimse_messages, dsutils

    from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
    from dcmtool.dicom.part10 import FileMeta

    original_decode: Any = None
    original_write_meta: Any = None

    def decode_msg(self: Any, primitive: Any, assoc: Any = None) -> bool:
        _receiving.assoc = assoc
        try:
            return bool(original_decode(self, primitive, assoc))
        finally:
            _receiving.assoc = None

    def named_temporary_file(*args: Any, **kwargs: Any) -> Any:
        directory = _incoming_dir()
        if directory is None:
            return tempfile.NamedTemporaryFile(*args, **kwargs)
        kwargs.update(dir=directory, prefix="rx-")
        hooks = ae_hooks(getattr(getattr(_receiving, "assoc", None), "ae", None))
        return IncomingFile(tempfile.NamedTemporaryFile(*args, **kwargs),
                            hooks.min_free_bytes if hooks else 0)

    def create_file_meta(**kwargs: Any) -> Any:
        assoc: Any = getattr(_receiving, "assoc", None)
        if _incoming_dir() is None:
            return dsutils.create_file_meta(**kwargs)
        return FileMeta(
            sop_class_uid=str(kwargs["sop_class_uid"]),
            sop_instance_uid=str(kwargs["sop_instance_uid"]),
            transfer_syntax_uid=str(kwargs["transfer_syntax"]),
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=implementation_version_name(),
            source_ae_title=str(assoc.requestor.ae_title).strip() or None,
            receiving_ae_title=str(assoc.acceptor.ae_title).strip() or None,
        )

    def write_file_meta_info(fh: Any, meta: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(meta, FileMeta):
            fh.write(meta.encode())
        else:
            original_write_meta(fh, meta, *args, **kwargs)

    fix = "incoming folder"
    original_decode = replace(dimse_messages.DIMSEMessage, "decode_msg", decode_msg, fix=fix,
                              params=("self", "primitive", "assoc"))
    replace(dimse_messages, "NamedTemporaryFile", named_temporary_file, fix=fix)
    replace(dimse_messages, "create_file_meta", create_file_meta, fix=fix)
    original_write_meta = replace(dimse_messages, "write_file_meta_info", write_file_meta_info,
                                  fix=fix)
