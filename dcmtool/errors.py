"""Typed errors and the exit-code table shared by every subcommand.

The library raises these; the CLI turns them into one line on stderr and ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes, documented in the README and ``dcmtool --help``."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CONNECTION_FAILED = 3
    ASSOCIATION_REJECTED = 4
    ASSOCIATION_ABORTED = 5
    DIMSE_FAILURE = 6
    PARTIAL = 7
    NOT_REPORTED = 8
    INTERRUPTED = 130


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success: every operation completed (warning statuses count as success)",
    ExitCode.ERROR: "error: bad input, configuration or an internal failure",
    ExitCode.USAGE: "usage error: unknown option or invalid argument",
    ExitCode.CONNECTION_FAILED: "connection failed: refused, unreachable or timed out",
    ExitCode.ASSOCIATION_REJECTED: "association rejected by the peer",
    ExitCode.ASSOCIATION_ABORTED: "association aborted, or no presentation context accepted",
    ExitCode.DIMSE_FAILURE: "the peer answered with a DIMSE failure status",
    ExitCode.PARTIAL: "partial success: some items failed, the others completed",
    ExitCode.NOT_REPORTED: "no report in time: the peer accepted the request, the outcome "
                           "is unknown",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, SIGINT)",
}


class DcmtoolError(Exception):
    """Base of every error the library raises on purpose.

    ``hint`` says what the user can do about it, in DICOM terms; the CLI prints it after the
    message. ``setting`` names the setting (``ServeOptions``/``Peer`` field or config key)
    the message is about or the hint suggests changing: the library knows no command line
    flags, the CLI names the flag that sets it.
    """

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None,
                 setting: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.setting = setting

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled whole (``store --jobs`` workers send theirs to the parent): pickle's default
        # calls ``cls(*args)``, which cannot pass the keyword-only fields of the subclasses.
        return _rebuilt, (type(self), self.message, dict(vars(self)))

    def __str__(self) -> str:
        return self.message


class UsageError(DcmtoolError):
    """Arguments that parse but make no sense together."""

    exit_code = ExitCode.USAGE


class ConfigError(DcmtoolError):
    """The configuration file is unreadable or invalid; the message names file and key."""


class PeerNotFound(DcmtoolError):
    """A peer name that is neither a configured node nor ``AET@HOST:PORT``."""

    exit_code = ExitCode.USAGE


class ConnectionFailed(DcmtoolError):
    """No TCP connection (or TLS handshake) to the peer."""

    exit_code = ExitCode.CONNECTION_FAILED


class AssociationTimeout(ConnectionFailed):
    """Connected, but the peer never answered the association request (ACSE timeout)."""


class AssociationRejected(DcmtoolError):
    """The peer answered A-ASSOCIATE-RJ."""

    exit_code = ExitCode.ASSOCIATION_REJECTED

    def __init__(
        self,
        message: str,
        *,
        result: int,
        source: int,
        reason: int,
        hint: str | None = None,
        setting: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, setting=setting)
        self.result = result
        self.source = source
        self.reason = reason


class AssociationAborted(DcmtoolError):
    """The association was aborted (A-ABORT or A-P-ABORT), by the peer or the provider."""

    exit_code = ExitCode.ASSOCIATION_ABORTED


class DimseTimeout(AssociationAborted):
    """No answer within the DIMSE timeout: we gave up and aborted the association."""

    @classmethod
    def waiting(cls, peer: str, during: str, seconds: float) -> DimseTimeout:
        """The peer did not answer ``during`` (``the C-FIND``) within ``seconds``: the
        message says that dcmtool gave up, not that the peer aborted."""
        return cls(f"no answer from {peer} to {during} within {seconds:g} s: dcmtool gave up "
                   "waiting and aborted the association",
                   hint="a slow peer needs a longer DIMSE timeout", setting="dimse_timeout")


class NoAcceptableContext(AssociationAborted):
    """The peer accepted the association but none of the proposed presentation contexts."""


class DimseFailure(DcmtoolError):
    """The peer answered a DIMSE request with a failure status."""

    exit_code = ExitCode.DIMSE_FAILURE

    def __init__(self, message: str, *, status: int, hint: str | None = None,
                 setting: str | None = None) -> None:
        super().__init__(message, hint=hint, setting=setting)
        self.status = status


class PartialFailure(DcmtoolError):
    """Some items of a batch failed; the others completed."""

    exit_code = ExitCode.PARTIAL


class CommitmentTimeout(DcmtoolError):
    """The peer accepted a storage commitment request (N-ACTION) and sent no report
    (N-EVENT-REPORT) within the wait: the outcome is unknown, not failed. Its own exit code,
    so that a script can tell "ask again later" from "the archive refused"."""

    exit_code = ExitCode.NOT_REPORTED

    def __init__(self, message: str, *, pending: Sequence[str] = (), hint: str | None = None,
                 setting: str | None = None) -> None:
        super().__init__(message, hint=hint, setting=setting)
        #: The Transaction UIDs still waiting for their report.
        self.pending = tuple(pending)


class MediaError(DcmtoolError):
    """A file set that cannot be written as asked: inconsistent inputs, an OUT that is not
    empty, a DICOMDIR that cannot be read. Nothing was written when it is raised before the
    copy starts; ``problems`` lists one line per file or record at fault."""

    def __init__(self, message: str, *, problems: Sequence[str] = (), hint: str | None = None,
                 setting: str | None = None) -> None:
        super().__init__(message, hint=hint, setting=setting)
        self.problems = list(problems)


def _rebuilt(kind: type[DcmtoolError], message: str, attributes: dict[str, Any]) -> DcmtoolError:
    """A pickled ``DcmtoolError`` again, with every attribute it had."""
    error = kind.__new__(kind)
    Exception.__init__(error, message)
    vars(error).update(attributes)
    return error
