"""dicomdir: `dcmtool dicomdir create` (media from a folder: copies under ISO 9660 File IDs,
then the DICOMDIR) beside DCMTK dcmmkdir, which only writes the DICOMDIR, in place, over files
already named in ISO 9660 form: dcmtool's rows include the copy, dcmmkdir's do not.

Each dcmtool run writes to an OUT that does not exist (the last run's set aside or deleted,
untimed); each dcmmkdir run starts without a DICOMDIR. After each run the bench checks that
the DICOMDIR is there and, for dcmtool, that every file was copied.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.fixture import (
    CaseSkipped,
    DataSet,
    Fixture,
    FreshDir,
    ServerError,
    Tools,
    count_files,
)
from bench.harness import FILES_PER_S, MIB, Program, Target, case

#: Runs ``ARGV...`` and writes its peak RSS in bytes (the child's VmHWM, from wait4's rusage,
#: ru_maxrss in KiB on Linux) to the file named first; exits with the child's status.
RSS_WRAPPER = """\
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


class MediaOut(FreshDir):
    """dcmtool's OUT: absent before each run (the last run's set aside with ``keep_used``,
    else deleted); ``check()`` wants OUT/DICOMDIR and ``expected`` files under OUT/DICOM."""

    def __init__(self, fx: Fixture, expected: int, keep_used: bool) -> None:
        super().__init__(fx, "dicomdir-out-", keep_used)
        self.expected = expected

    def prepare(self) -> None:
        super().prepare()
        self.path.rmdir()  # `dicomdir create` makes OUT itself

    def check(self) -> None:
        if not (self.path / "DICOMDIR").is_file():
            raise ServerError(f"no DICOMDIR in {self.path}")
        copied = count_files(self.path / "DICOM")
        if copied != self.expected:
            raise ServerError(f"copied {copied} files of {self.expected}")


class IsoCopy:
    """Links (else copies) of a data set's files under ISO 9660 names, DICOM/DIR00001/IMG00001
    (100 files per folder), made once; ``prepare()`` removes the DICOMDIR before each
    dcmmkdir run, ``check()`` wants it after."""

    PER_FOLDER = 100

    def __init__(self, fx: Fixture, data: DataSet) -> None:
        self.root = fx.tempdir(prefix="dicomdir-iso-")
        self.dicomdir = self.root / "DICOMDIR"
        if fx.listing:
            return
        sources = sorted(p for p in data.dir.iterdir() if p.is_file())
        for index, source in enumerate(sources):
            folder = self.root / "DICOM" / f"DIR{index // self.PER_FOLDER + 1:05d}"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"IMG{index % self.PER_FOLDER + 1:05d}"
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)

    def prepare(self) -> None:
        for path in (self.dicomdir, self.dicomdir.with_name("DICOMDIR.BAK")):
            path.unlink(missing_ok=True)

    def check(self) -> None:
        if not self.dicomdir.is_file() or self.dicomdir.stat().st_size == 0:
            raise ServerError(f"dcmmkdir wrote no {self.dicomdir}")


class PeakRss:
    """Runs a row's command under RSS_WRAPPER (``python peak_rss.py FILE ARGV...``);
    ``measure`` (the row's) reads the peak back. The peak is the program's own process (its
    children, if it had any, are not added)."""

    def __init__(self, fx: Fixture, name: str) -> None:
        folder = fx.tempdir(prefix=f"rss-{name}-")
        self.wrapper = folder / "peak_rss.py"
        self.wrapper.write_text(RSS_WRAPPER)
        self.file = folder / "peak-rss"

    def argv(self, tools: Tools, argv: list[str]) -> list[str]:
        return [tools.python, str(self.wrapper), str(self.file), *argv]

    def measure(self, seconds: float) -> float:
        try:
            return float(self.file.read_text())
        except (OSError, ValueError) as exc:
            raise ServerError(f"no peak RSS in {self.file}: {exc}") from None


def dicomdir_rows(tools: Tools, fx: Fixture, data: DataSet, rss: bool = False
                  ) -> list[Program]:
    """`dcmtool dicomdir create OUT DIR` and `dcmmkdir +r +id ISO +D ISO/DICOMDIR` over
    ``data``; with ``rss`` each row records its program's peak RSS instead of its time."""
    dcmmkdir = tools.dcmtk("dcmmkdir")
    # Keep every run's copy until the case ends (a rename between runs, see FreshDir) if
    # there is room: deleting thousands of files slows the next run's file creation.
    keep = not rss and fx.has_room(fx.rounds * data.nbytes)
    out = MediaOut(fx, data.files, keep)
    iso = IsoCopy(fx, data)
    dcmtool_argv = [*tools.dcmtool, "dicomdir", "create", str(out.path), str(data.dir)]
    dcmmkdir_argv = [dcmmkdir, "+r", "+id", str(iso.root), "+D", str(iso.dicomdir)]
    rows = [
        Program("dcmtool dicomdir create (copy)", dcmtool_argv, role="dcmtool",
                work=data.files, before_each=out.prepare, after_each=out.check),
        Program("DCMTK dcmmkdir (in place)", dcmmkdir_argv, role="peer", work=data.files,
                before_each=iso.prepare, after_each=iso.check, cwd=str(iso.root)),
    ]
    if rss:
        for row, name in zip(rows, ("dcmtool", "dcmmkdir"), strict=True):
            peak = PeakRss(fx, name)
            row.argv = peak.argv(tools, row.argv)
            row.measure = peak.measure
            row.work = None
    return rows


@case("dicomdir-small", FILES_PER_S, "2,000 small images (64x64x16 bit, ~9 KB; 4 patients, "
      "20 series): dcmtool dicomdir create OUT DIR (copy and DICOMDIR) / DCMTK dcmmkdir +r "
      "in place on ISO 9660-named links", runs=5, warmups=1)
def dicomdir_small_case(tools: Tools, fx: Fixture) -> list[Program]:
    tools.dcmtk("dcmmkdir")
    fx.require_free(2**28, "2,000 small images and their copies")
    data = fx.data("small", "--count", "2000", "--series", "20")
    rows = dicomdir_rows(tools, fx, data)
    rows[1].target = Target.ratio(">=", 1.0)
    return rows


@case("dicomdir-ct", FILES_PER_S, "500 CT images (512x512x16 bit, ~513 KB; 1 study, 5 "
      "series): dcmtool dicomdir create OUT DIR (copy and DICOMDIR) / DCMTK dcmmkdir +r in "
      "place on ISO 9660-named links", runs=5, warmups=1)
def dicomdir_ct_case(tools: Tools, fx: Fixture) -> list[Program]:
    tools.dcmtk("dcmmkdir")
    fx.require_free(2**30, "500 CT images and their copies")
    data = fx.data("ct", "--count", "500", "--series", "5")
    rows = dicomdir_rows(tools, fx, data)
    rows[1].target = Target.ratio(">=", 1.0)
    return rows


@case("dicomdir-rss", MIB, "peak RSS of dcmtool dicomdir create / DCMTK dcmmkdir over "
      "10,000 small images (64x64x16 bit, ~9 KB; 4 patients, 100 series)", runs=3, warmups=0)
def dicomdir_rss_case(tools: Tools, fx: Fixture) -> list[Program]:
    tools.dcmtk("dcmmkdir")
    if not Path("/proc/self/status").is_file():
        raise CaseSkipped("needs Linux for the peak RSS (ru_maxrss in KiB)")
    fx.require_free(2**30, "10,000 small images and one copy")
    data = fx.data("small", "--count", "10000", "--series", "100")
    rows = dicomdir_rows(tools, fx, data, rss=True)
    rows[0].target = Target.absolute("<=", 150)
    return rows
