"""Re-identification of data sets on their way out: ``Keyword=Value`` assignments and new
Study/Series/SOP Instance UIDs, shared by ``store`` (before sending) and the media exporter
(before writing the copies). The originals are never touched: callers modify data sets read
into memory."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from dcmtool.errors import UsageError


class Modifier:
    """``--set Keyword=Value`` and ``--new-uids``: applied to each data set before it leaves.

    New UIDs are consistent across the batch: every file of a study gets the same new Study
    Instance UID, and so on (like storescu's +II/+IS/+IR together). Applying the modifier to
    the same data set twice (its header first, the whole file later) gives the same UIDs. A
    new UID is derived from the original and a secret of this modifier, not drawn at random,
    so the copies of it in ``store --jobs`` worker processes agree without talking to each
    other (a presentation state sent by one worker still names the image another sent).
    """

    UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")

    def __init__(self, assignments: Sequence[str], new_uids: bool,
                 known: dict[str, str] | None = None) -> None:
        """``known``: original -> new UIDs of an earlier run (``--resume``), kept, so that
        the files sent now join the studies and series sent then."""
        from pydicom.datadict import dictionary_VR, tag_for_keyword

        self.values: list[tuple[str, str]] = []
        for item in assignments:
            keyword, sep, value = item.partition("=")
            keyword = keyword.strip()
            tag = tag_for_keyword(keyword)
            if not sep or tag is None:
                raise UsageError(f"{item!r}: expected Keyword=Value with a DICOM keyword",
                                 setting="set")
            if dictionary_VR(tag) == "SQ":
                raise UsageError(f"{keyword}: sequences cannot be set this way", setting="set")
            self.values.append((keyword, value))
        self.new_uids = new_uids
        self._uids: dict[str, str] = dict(known or {})
        self._secret = os.urandom(32).hex()  # never leaves the process (and its forks)
        self._lock = threading.Lock()

    def _new(self, old: str) -> str:
        from pydicom.uid import generate_uid

        with self._lock:
            if old not in self._uids:
                self._uids[old] = generate_uid(entropy_srcs=[self._secret, old])
            return self._uids[old]

    def __call__(self, ds: Any) -> None:
        for keyword, value in self.values:
            setattr(ds, keyword, value)
        if self.new_uids:
            for keyword in self.UID_KEYWORDS:
                if keyword in ds:
                    setattr(ds, keyword, self._new(str(ds.data_element(keyword).value)))
            self._references(ds)
            if hasattr(ds, "file_meta"):
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    #: UIDs in sequence items that name a study, series or instance: they follow the
    #: instances they name (a presentation state's images, an SR's evidence), as PS3.15
    #: E.1's consistent replacement does; class UIDs are left alone.
    REFERENCE_KEYWORDS = (*UID_KEYWORDS, "ReferencedSOPInstanceUID")

    def _references(self, ds: Any) -> None:
        for elem in ds:
            if elem.VR != "SQ":
                continue
            for item in elem.value:
                for keyword in self.REFERENCE_KEYWORDS:
                    if keyword in item and item.data_element(keyword).value:
                        setattr(item, keyword,
                                self._new(str(item.data_element(keyword).value)))
                self._references(item)
