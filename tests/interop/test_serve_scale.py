"""``dcmtool serve`` under concurrent load (#18): several associations storing at once (their
durability work shared) while others query. Every query answers with success and a state
the archive really passed through (counts only grow, nothing acknowledged is missing); after
a graceful stop the index equals the folder and holds every acknowledged instance (with
DCMTK storescu processes as the senders: test_serve_peers.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
from support.archive import ServeProcess
from support.load import check_archive, start_senders

from dcmtool.archive.storage import Archive, StorePolicy
from dcmtool.net.patches import apply as apply_pynetdicom_fixes

STUDY_FIND = StudyRootQueryRetrieveInformationModelFind
SENDERS = 4
PER_SENDER = 150
#: Every instance start_senders sends has this Patient ID (one study per sender).
PATIENT_ID = "PAT001"
PENDING = (0xFF00, 0xFF01)

ServeProcessFactory = Callable[..., ServeProcess]


@dataclass
class Answer:
    """One C-FIND answer, reduced to what must only grow while instances arrive."""

    level: str
    instances: dict[str, int]  # Study Instance UID -> instances in it
    series: dict[str, int]  # Study Instance UID -> series in it
    #: IMAGE level: the SOP Instance UIDs returned.
    sop_instances: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.instances.values())


@contextmanager
def query_association(port: int) -> Iterator[Any]:
    ae = AE("QUERIER")
    ae.add_requested_context(STUDY_FIND)
    assoc = ae.associate("127.0.0.1", port, ae_title="DCMTOOL")
    assert assoc.is_established, "the query association was not accepted"
    try:
        yield assoc
    finally:
        assoc.release()


def find(assoc: Any, level: str, **keys: str) -> list[Dataset]:
    """The matches of one Study Root C-FIND; fails unless its final status is success."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    matches: list[Dataset] = []
    final: int | None = None
    for status, match in assoc.send_c_find(identifier, STUDY_FIND):
        assert "Status" in status, f"{level} C-FIND: no response (association lost)"
        if status.Status in PENDING:
            matches.append(match)
        else:
            final = int(status.Status)
    assert final == 0x0000, f"{level} C-FIND ended with status {final!r}, not success"
    return matches


def study_answer(assoc: Any) -> Answer:
    answer = Answer("STUDY", {}, {})
    for match in find(assoc, "STUDY", PatientID=PATIENT_ID, StudyInstanceUID="",
                      NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances=""):
        study = str(match.StudyInstanceUID)
        assert match.PatientID == PATIENT_ID, match
        assert study not in answer.instances, f"study {study} answered twice"
        answer.instances[study] = int(match.NumberOfStudyRelatedInstances)
        answer.series[study] = int(match.NumberOfStudyRelatedSeries)
        # A study is committed with its first series, a series with its first instance.
        assert 1 <= answer.series[study] <= answer.instances[study], match
    return answer


def series_answer(assoc: Any) -> Answer:
    answer = Answer("SERIES", {}, {})
    seen: set[str] = set()
    for match in find(assoc, "SERIES", PatientID=PATIENT_ID, StudyInstanceUID="",
                      SeriesInstanceUID="", NumberOfSeriesRelatedInstances=""):
        study, series = str(match.StudyInstanceUID), str(match.SeriesInstanceUID)
        assert series not in seen, f"series {series} answered twice"
        seen.add(series)
        count = int(match.NumberOfSeriesRelatedInstances)
        assert count >= 1, f"series {series} without instances: {match}"
        answer.instances[study] = answer.instances.get(study, 0) + count
        answer.series[study] = answer.series.get(study, 0) + 1
    return answer


def image_answer(assoc: Any) -> Answer:
    answer = Answer("IMAGE", {}, {})
    series_of: dict[str, set[str]] = {}
    for match in find(assoc, "IMAGE", PatientID=PATIENT_ID, StudyInstanceUID="",
                      SeriesInstanceUID="", SOPInstanceUID=""):
        study, uid = str(match.StudyInstanceUID), str(match.SOPInstanceUID)
        assert uid not in answer.sop_instances, f"instance {uid} answered twice"
        answer.sop_instances.add(uid)
        answer.instances[study] = answer.instances.get(study, 0) + 1
        series_of.setdefault(study, set()).add(str(match.SeriesInstanceUID))
    answer.series = {study: len(series) for study, series in series_of.items()}
    return answer


ASKED = (study_answer, series_answer, image_answer)


class Querier(threading.Thread):
    """One association asking STUDY, SERIES and IMAGE questions in turn until ``done`` is
    set; each answer is checked against what was acknowledged before it was asked."""

    def __init__(self, port: int, acknowledged: list[str], done: threading.Event) -> None:
        super().__init__()
        self.port = port
        self.acknowledged = acknowledged
        self.done = done
        self.answers: list[Answer] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with query_association(self.port) as assoc:
                while not self.done.is_set():
                    for ask in ASKED:
                        before = set(self.acknowledged)
                        answer = ask(assoc)
                        check_acknowledged_seen(answer, before)
                        self.answers.append(answer)
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc


def check_acknowledged_seen(answer: Answer, before: set[str]) -> None:
    """An instance acknowledged before the question was asked is in the answer: success is
    sent only once its row is committed."""
    assert answer.total >= len(before), (
        f"{answer.level} answer counts {answer.total} instances, {len(before)} were "
        "acknowledged before it was asked")
    if answer.level == "IMAGE":
        missing = before - answer.sop_instances
        assert not missing, (f"{len(missing)} acknowledged instance(s) missing from a later "
                             f"IMAGE answer: {sorted(missing)[:3]}")


def check_only_grows(answers: list[Answer]) -> None:
    """Successive answers of one association, at whatever level: no study disappears, no
    count goes down, no instance returned at IMAGE level is missing from a later one."""
    previous: Answer | None = None
    previous_image: Answer | None = None
    for number, answer in enumerate(answers):
        if previous is not None:
            where = f"answer {number} ({answer.level} after {previous.level})"
            for study, count in previous.instances.items():
                assert study in answer.instances, f"{where}: study {study} disappeared"
                assert answer.instances[study] >= count, \
                    f"{where}: study {study} went from {count} to {answer.instances[study]}"
                assert answer.series[study] >= previous.series[study], \
                    f"{where}: study {study}'s series went down"
        if answer.level == "IMAGE":
            if previous_image is not None:
                gone = previous_image.sop_instances - answer.sop_instances
                assert not gone, f"answer {number}: {len(gone)} instance(s) disappeared"
            previous_image = answer
        previous = answer


def test_concurrent_senders_and_queries_keep_the_index_equal_to_the_folder(
        serve_process: ServeProcessFactory, tmp_path: Path) -> None:
    # The senders and queriers are pynetdicom clients in this process: without dcmtool's fix
    # for pynetdicom#875 their reactor thread now and then takes a response (a sender then
    # waits 30 s for it and aborts).
    apply_pynetdicom_fixes()
    root = tmp_path / "archive"
    served = serve_process(root=root)
    acknowledged: list[str] = []
    started = threading.Event()
    senders = start_senders(served.port, count=PER_SENDER, senders=SENDERS,
                            acknowledged=acknowledged, started=started, start_after=20,
                            calling="SCALE")
    assert started.wait(60), served.process.log_tail()
    done = threading.Event()
    queriers = [Querier(served.port, acknowledged, done) for _ in range(2)]
    for querier in queriers:
        querier.start()
    for thread in senders:
        thread.join(120)
    done.set()
    for querier in queriers:
        querier.join(120)
    assert not any(t.is_alive() for t in [*senders, *queriers]), served.process.log_tail()
    for querier in queriers:
        if querier.error is not None:
            raise querier.error
    assert len(acknowledged) == SENDERS * PER_SENDER, served.process.log_tail()

    answers = [answer for querier in queriers for answer in querier.answers]
    # The queries ran while instances were arriving, not only before or after.
    assert any(0 < answer.total < len(acknowledged) for answer in answers), \
        [answer.total for answer in answers]
    for querier in queriers:
        check_only_grows(querier.answers)

    # Once the senders are done, every level answers with all of it.
    with query_association(served.port) as assoc:
        last = [ask(assoc) for ask in ASKED]
    for answer in last:
        assert sorted(answer.instances.values()) == [PER_SENDER] * SENDERS, answer.level
    assert last[2].sop_instances == set(acknowledged)
    check_only_grows([*queriers[0].answers, *last])

    served.process.stop()
    assert served.process.process.returncode == 0, served.process.log_tail()
    archive = Archive(root, StorePolicy(min_free_bytes=0))
    try:
        check_archive(archive, acknowledged)
        counts = archive.index.counts()
        assert counts["instances"] == len(acknowledged)
        assert counts["studies"] == SENDERS
    finally:
        archive.close()
