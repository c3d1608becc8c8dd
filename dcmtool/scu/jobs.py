"""``store --jobs N`` in forked worker processes: one interpreter (and lock) per association.

In threads, N associations share one interpreter lock, and a small-file send is mostly
Python; forked workers run truly in parallel and start in milliseconds (they inherit every
imported module, and the files to send, from the parent: nothing is pickled to start them).

    if jobs.forking():
        errors = jobs.run_forked(groups, sender, stop)   # one worker per group of files

``sender`` is store's group sender (``store._Group``, see ``Sender``): each worker sends its
group with a copy of it that reports to the parent, and the parent replays every report on
``sender`` itself, so the summary, the progress callback and the retry messages live in one
process, in the order things happened. The parent

- calls ``sender.record`` / ``sender.on_retry`` for each worker report as it arrives;
- forwards ``stop`` (the CLI's Ctrl-C) to the workers at once through shared memory: each
  finishes the file in flight and reports the rest as interrupted, as in one process;
- re-emits the workers' log records through its own handlers (so they go where the
  command's logging goes, e.g. above the progress bar);
- reports, when a worker dies (killed) or fails, the files it had not reported as not sent
  (``sender.give_up``), with why, instead of waiting for it.

Reports cross the process boundary pickled (``DcmtoolError`` pickles with its attributes).
Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group): the parent
decides, and kills them if it is interrupted a second time.
"""

from __future__ import annotations

import io
import logging
import mmap
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, Protocol

from dcmtool.errors import DcmtoolError
from dcmtool.scu.store import FileOutcome, Instance  # store imports this module lazily

#: The parent reads the workers' reports at most this often: a wake-up for every file
#: (thousands a second) doubled the parent's CPU, taken from the workers and the peer.
READ_INTERVAL = 0.002

Record = Callable[[Instance, FileOutcome], None]
Retry = Callable[[str, int, float], None]


class Stop(Protocol):
    """What a sender checks before each file: a ``threading.Event`` or a ``SharedFlag``."""

    def is_set(self) -> bool: ...


class Sender(Protocol):
    """What the pool needs of store's group sender."""

    record: Record
    on_retry: Retry | None
    abandoned_by: DcmtoolError | None

    def run(self, files: list[Instance]) -> DcmtoolError | None: ...

    def reporting_to(self, record: Record, on_retry: Retry | None, stop: Stop) -> Sender: ...

    def give_up(self, pending: list[Instance], exc: DcmtoolError,
                in_flight: Instance | None = None) -> None: ...


def forking() -> bool:
    """Whether jobs run as forked processes here: on Linux (elsewhere fork is missing, or
    unsafe with system frameworks loaded, as on macOS), else in threads."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class SharedFlag:
    """A set-once flag in memory shared with the workers forked after it was made: reading
    it costs no system call, so a worker checks it before every file."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 1)  # anonymous and shared (MAP_SHARED by default)

    def set(self) -> None:
        self._memory[0] = 1

    def is_set(self) -> bool:
        return self._memory[0] == 1


def run_forked(groups: Sequence[list[Instance]], sender: Sender,
               stop: threading.Event | None = None) -> list[DcmtoolError | None]:
    """Send each group in its own forked worker; for each, the error when none of its
    associations could be opened (``_Group.run``'s result), as in one process."""
    flag = SharedFlag()
    workers: list[_Worker] = []
    finished = threading.Event()
    try:
        for files in groups:
            workers.append(_Worker.fork(files, sender, flag, [w.fd for w in workers]))
        if stop is not None:
            threading.Thread(target=_forward_stop, args=(stop, flag, finished), daemon=True,
                             name="dcmtool-jobs-stop").start()
        _collect(workers, sender)
    finally:
        finished.set()
        for worker in workers:
            worker.end()
    return [worker.error for worker in workers]


def _forward_stop(stop: threading.Event, flag: SharedFlag, finished: threading.Event) -> None:
    # A thread, because the parent's main thread blocks in poll(), which a signal handler
    # setting ``stop`` does not end (PEP 475 retries it).
    while not finished.is_set():
        if stop.wait(0.1):
            flag.set()
            return


class _Worker:
    """The parent's end of one worker: its process, its report pipe, what it reported."""

    def __init__(self, pid: int, fd: int, files: list[Instance]) -> None:
        self.pid, self.fd, self.files = pid, fd, files
        self.reported = [False] * len(files)
        self.received = bytearray()
        self.ended = False  # its last report came: ``error`` is its result
        self.error: DcmtoolError | None = None
        self.exit_status: int | None = None

    @classmethod
    def fork(cls, files: list[Instance], sender: Sender, flag: SharedFlag,
             inherited: list[int]) -> _Worker:
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # the worker: never returns
            os.close(read_fd)
            for fd in inherited:  # earlier workers' pipes: a dead parent must show as EPIPE
                os.close(fd)
            _work(write_fd, files, sender, flag)
        os.close(write_fd)
        return cls(pid, read_fd, files)

    def reports(self, data: bytes) -> list[Any]:
        """The whole reports in what was read so far (a part of the next one is kept)."""
        received = self.received
        received += data
        reports, offset = [], 0
        while len(received) - offset >= 4:
            (length,) = struct.unpack_from(">I", received, offset)
            if len(received) - offset - 4 < length:
                break
            reports.append(pickle.loads(received[offset + 4:offset + 4 + length]))
            offset += 4 + length
        del received[:offset]
        return reports

    def end(self) -> None:
        """Reap the process (killed first if it still runs: the parent was interrupted)."""
        if self.exit_status is None:
            if not self.ended:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                _, self.exit_status = os.waitpid(self.pid, 0)
            except ChildProcessError:  # reaped by someone else (SIGCHLD ignored)
                self.exit_status = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def death(self) -> str:
        """How the worker ended without its last report."""
        code = os.waitstatus_to_exitcode(self.exit_status or 0)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"a store worker process (pid {self.pid}) was killed by {name}"
        return f"a store worker process (pid {self.pid}) ended with exit code {code}"


def _collect(workers: list[_Worker], sender: Sender) -> None:
    """Replay the workers' reports on ``sender`` until every worker has ended."""
    poller = select.poll()
    by_fd = {worker.fd: worker for worker in workers}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    while by_fd:
        for fd, _ in poller.poll():
            worker = by_fd[fd]
            data = os.read(fd, 1 << 16)
            if data:
                for report in worker.reports(data):
                    _replay(worker, report, sender)
                continue
            poller.unregister(fd)  # end of file: the worker has exited
            del by_fd[fd]
            worker.end()
            if not worker.ended:
                _lost(worker, sender, worker.death())
        if by_fd:
            time.sleep(READ_INTERVAL)  # let reports gather: fewer, fuller reads


def _replay(worker: _Worker, report: tuple[Any, ...], sender: Sender) -> None:
    kind = report[0]
    if kind == "file":  # the outcome without its path: the parent's own Path object is
        _, index, fields = report  # quicker than one unpickled (hashed, compared, sorted)
        worker.reported[index] = True
        instance = worker.files[index]
        sender.record(instance, FileOutcome(path=instance.path, **fields))
    elif kind == "retry":
        if sender.on_retry is not None:
            sender.on_retry(*report[1:])
    elif kind == "log":
        record: logging.LogRecord = report[1]
        logging.getLogger(record.name).handle(record)
    elif kind == "end":
        _, worker.error, abandoned_by = report
        worker.ended = True
        if sender.abandoned_by is None:
            sender.abandoned_by = abandoned_by
    elif kind == "crash":
        worker.ended = True
        _lost(worker, sender, f"a store worker process (pid {worker.pid}) failed: "
                              f"{report[1]}")


def _lost(worker: _Worker, sender: Sender, why: str) -> None:
    """A worker ended without reporting every file: the rest were not sent, as far as
    anyone can tell (one may have been in flight)."""
    error = DcmtoolError(why)
    worker.error = error
    unreported = [f for f, done in zip(worker.files, worker.reported, strict=True) if not done]
    if unreported:
        sender.give_up(unreported, error)


# --- in the worker ---------------------------------------------------------------------


def _work(fd: int, files: list[Instance], sender: Sender, flag: SharedFlag) -> NoReturn:
    """A forked worker's whole life: send ``files``, report everything on ``fd``, exit
    without running the parent's clean-up (atexit, buffered output, a test runner's)."""
    code = 1
    channel = _Channel(fd)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards Ctrl-C as ``flag``
        # Fresh objects for the standard streams: the inherited ones may be locked by a
        # thread of the parent that does not exist here (a progress bar's refresh).
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - lives until _exit
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        root = logging.getLogger()
        root.handlers[:] = [_ForwardLogs(channel)]
        position = {id(instance): n for n, instance in enumerate(files)}

        def record(instance: Instance, outcome: FileOutcome) -> None:
            fields = dict(vars(outcome))
            del fields["path"]
            channel.send(("file", position[id(instance)], fields))

        def retry(message: str, attempt: int, delay: float) -> None:
            channel.send(("retry", message, attempt, delay))

        job = sender.reporting_to(record, retry, flag)
        error = job.run(files)
        channel.send(("end", error, job.abandoned_by))
        code = 0
    except BaseException as exc:  # a bug: say so, the parent reports the files left
        try:
            channel.send(("crash", f"{type(exc).__name__}: {exc}"))
        except BaseException:
            pass
    finally:
        os._exit(code)


class _Channel:
    """Length-prefixed pickled reports to the parent, each written whole at once (so a
    worker killed between two writes never leaves half a report)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, report: tuple[Any, ...]) -> None:
        buffer = io.BytesIO()
        buffer.write(b"\0\0\0\0")
        pickle.dump(report, buffer, pickle.HIGHEST_PROTOCOL)
        data = buffer.getbuffer()
        struct.pack_into(">I", data, 0, len(data) - 4)
        while data:
            written = os.write(self.fd, data)  # BrokenPipeError: the parent is gone
            data = data[written:]


class _ForwardLogs(logging.Handler):
    """A worker's log records, to be handled by the parent's handlers."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # As logging's QueueHandler prepares records: the text, not what made it.
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args = record.getMessage(), None
            record.exc_info = None
            self.channel.send(("log", record))
        except Exception:  # a record that cannot travel is dropped, not printed
            pass
