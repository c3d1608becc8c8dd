"""Option groups: flags that several commands share, declared once and received as one object.

A group is a frozen dataclass whose fields are annotated with the options of
``dcmtool.cli.options`` (the field name is the parameter name, the field default is the
option's default). A command asks for a group with one parameter annotated with it::

    @network_options
    @logging_options
    def find(peer: ..., json_output: options.JsonOutput = False, *,
             network: NetworkOptions, logging: LoggingOptions) -> None:
        target = resolve(peer, network)

The decorator puts the group's fields in that parameter's place in the signature Typer reads
(``__signature__`` and ``__annotations__``), so the options appear exactly where the parameter
stands, in field order; on a call it takes those keyword arguments out again and passes one
instance of the group. The parameter is found by its annotation, so its name is free.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from dcmtool.cli import options

R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class NetworkOptions:
    """How to reach a peer: AE titles, PDU size, timeouts, TLS (flags or environment)."""

    calling_aet: options.CallingAET = None
    called_aet: options.CalledAET = None
    max_pdu: options.MaxPDU = None
    connect_timeout: options.ConnectTimeout = None
    acse_timeout: options.AcseTimeout = None
    dimse_timeout: options.DimseTimeout = None
    network_timeout: options.NetworkTimeout = None
    tls_cert: options.TlsCert = None
    tls_key: options.TlsKey = None
    tls_ca: options.TlsCA = None
    no_hostname_check: options.NoHostnameCheck = False


@dataclasses.dataclass(frozen=True)
class LoggingOptions:
    """A command's own logging flags (``dcmtool echo -v``), as the root callback has them."""

    verbose: options.Verbose = 0
    quiet: options.Quiet = False
    debug: options.Debug = False
    log_file: options.LogFile = None
    traceback: options.Traceback = False


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """How results go to stdout: a table (the default), or one of JSON, JSON lines, CSV."""

    json_output: options.JsonOutput = False
    jsonl: options.JsonLines = False
    as_csv: options.CsvOutput = False

    @property
    def table(self) -> bool:
        return not (self.json_output or self.jsonl or self.as_csv)

    def __post_init__(self) -> None:
        if self.json_output + self.jsonl + self.as_csv > 1:
            from dcmtool.errors import UsageError

            raise UsageError("choose one of --json, --jsonl and --csv")


@dataclasses.dataclass(frozen=True)
class SelectionOptions:
    """What a retrieval asks for: studies, series, accession numbers, patients, ``-k`` keys at a
    level, or a list read from a file."""

    study: options.Study = None
    series: options.Series = None
    accession: options.Accession = None
    patient_id: options.PatientIdSelection = None
    keys: options.Keys = None
    level: options.RetrieveLevel = None
    from_list: options.FromList = None
    from_key: options.FromKey = None


def _expand(group: type[Any], function: Callable[..., R]) -> Callable[..., R]:
    """``function`` as Typer should see it: the ``group`` parameter replaced by its fields."""
    signature = inspect.signature(function, eval_str=True)
    targets = [p for p in signature.parameters.values() if p.annotation is group]
    if len(targets) != 1:
        raise TypeError(f"{function.__qualname__}: expected one parameter annotated "
                        f"{group.__name__}, found {len(targets)}")
    [target] = targets
    hints = typing.get_type_hints(group, include_extras=True)
    fields = [
        inspect.Parameter(field.name, target.kind, default=field.default,
                          annotation=hints[field.name])
        for field in dataclasses.fields(group)
    ]
    names = [field.name for field in fields]
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter is target:
            parameters += fields
        elif parameter.name in names:
            raise TypeError(f"{function.__qualname__}: parameter {parameter.name!r} is also a "
                            f"field of {group.__name__}")
        else:
            parameters.append(parameter)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        if target.name not in kwargs:
            kwargs[target.name] = group(**{n: kwargs.pop(n) for n in names if n in kwargs})
        return function(*args, **kwargs)

    new_signature = signature.replace(parameters=parameters)
    wrapper.__signature__ = new_signature  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        p.name: p.annotation for p in parameters if p.annotation is not p.empty
    }
    if new_signature.return_annotation is not new_signature.empty:
        wrapper.__annotations__["return"] = new_signature.return_annotation
    return wrapper


def network_options(function: Callable[..., R]) -> Callable[..., R]:
    """Give ``function`` the network flags, received as its ``NetworkOptions`` parameter."""
    return _expand(NetworkOptions, function)


def output_options(function: Callable[..., R]) -> Callable[..., R]:
    """Give ``function`` the output format flags, received as its ``OutputOptions``."""
    return _expand(OutputOptions, function)


def selection_options(function: Callable[..., R]) -> Callable[..., R]:
    """Give ``function`` the retrieval selection flags, received as ``SelectionOptions``."""
    return _expand(SelectionOptions, function)


def logging_options(function: Callable[..., R]) -> Callable[..., R]:
    """Give ``function`` the logging flags, received as its ``LoggingOptions`` parameter."""
    return _expand(LoggingOptions, function)
