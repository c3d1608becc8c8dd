"""Matching values of query keys, checked against their VR before they reach a peer.

A value the peer cannot match (``StudyDate=2024-01-01``, a 13th month, a range that ends
before it starts) is not an error there: it matches nothing, and the user sees an empty
answer with exit 0. So each value is checked here by its VR (PS3.5 6.2, and the matching
rules of PS3.4 C.2.2.2), and dates may be named the way people say them: ``today``,
``yesterday``, ``-7d`` (the last seven days through today), also as range ends.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable

DATE_FORMS = ("YYYYMMDD, a range YYYYMMDD-YYYYMMDD (either end may be left open), today, "
              "yesterday, tomorrow or -7d (the last 7 days)")
TIME_FORMS = "HHMMSS (HH, HHMM, HHMMSS.FFFFFF) or a range HHMMSS-HHMMSS"
DATETIME_FORMS = "YYYYMMDDHHMMSS (any leading part of it) or a range of two of those"

_RELATIVE_DAYS = re.compile(r"^-(\d{1,5})d$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_TIME = re.compile(r"^(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,6})?)?)?$")
_DATETIME = re.compile(r"^\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?"
                       r"(?:\+\d{4})?$")
_CS = re.compile(r"^[A-Z0-9 _*?]*$")
_AGE = re.compile(r"^\d{3}[DWMY]$")
_IS = re.compile(r"^[+-]?\d{1,12}$")
_DS = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[Ee][+-]?\d+)?$")
_UID = re.compile(r"^[0-9.]{1,64}$")
#: Longest value of each VR (characters), as far as a query value is concerned.
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "AS": 4, "IS": 12, "DS": 16}


class MatchingValueError(ValueError):
    """A value that cannot match anything of its VR: the message says the expected form."""


def matching_value(vr: str, value: str, *, today: datetime.date | None = None) -> str:
    """The value to send for a key of ``vr``: checked, with relative dates resolved and CS
    values upper-cased (defined terms are upper case). Raises ``MatchingValueError``."""
    today = today or datetime.date.today()
    if vr == "DA":
        return _date_matching(value.strip(), today)
    if vr == "TM":
        return _range(value.strip(), _time, TIME_FORMS, "a time")
    if vr == "DT":
        return _range(value.strip(), _datetime, DATETIME_FORMS, "a date and time")
    if vr == "UI":
        for uid in value.split("\\"):
            if not _UID.match(uid):
                raise MatchingValueError(f"{uid!r} is not a UID (digits and dots, at most 64 "
                                         "characters)")
        return value
    if vr == "CS":
        value = value.upper()
        for part in value.split("\\"):
            if not _CS.match(part):
                raise MatchingValueError(f"{part!r} is not a code string (A-Z, 0-9, space and "
                                         "_, at most 16 characters)")
    elif vr == "AS" and value not in ("*", "") and not _AGE.match(value):
        raise MatchingValueError(f"{value!r} is not an age (nnnD, nnnW, nnnM or nnnY, as "
                                 "045Y)")
    elif vr == "IS" and not _IS.match(value):
        raise MatchingValueError(f"{value!r} is not an integer string")
    elif vr == "DS" and not _DS.match(value):
        raise MatchingValueError(f"{value!r} is not a decimal string")
    limit = _MAX_LENGTH.get(vr)
    if limit is not None:
        for part in value.split("\\"):
            if len(part) > limit:
                raise MatchingValueError(f"{part!r} is {len(part)} characters long; {vr} "
                                         f"values have at most {limit}")
    return value


def _date_matching(text: str, today: datetime.date) -> str:
    relative = _RELATIVE_DAYS.match(text.lower())
    if relative:
        start = today - datetime.timedelta(days=int(relative.group(1)))
        return f"{start:%Y%m%d}-{today:%Y%m%d}"
    iso = _ISO_DATE.match(text)
    if iso:
        raise MatchingValueError(f"{text!r} is not a DICOM date; did you mean "
                                 f"{''.join(iso.groups())}? (expected {DATE_FORMS})")
    return _range(text, lambda part: _date(part, today), DATE_FORMS, "a date")


def _range(text: str, one: Callable[[str], str], forms: str, what: str) -> str:
    """A single value or a range ``A-B``, ``-B``, ``A-`` of values ``one`` accepts."""
    if text.count("-") > 1:
        raise MatchingValueError(f"{text!r} is not {what} or a range (expected {forms})")
    start, dash, end = text.partition("-")
    try:
        first = one(start) if start else ""
        last = one(end) if end else ""
    except MatchingValueError as exc:
        raise MatchingValueError(f"{exc} (expected {forms})") from None
    if not dash:
        return first
    if not (first or last):
        raise MatchingValueError(f"{text!r}: a range needs at least one end (expected {forms})")
    if first and last and first > last:
        raise MatchingValueError(f"the range {text!r} ends before it starts")
    return f"{first}-{last}"


def _date(text: str, today: datetime.date) -> str:
    words = {"today": today, "yesterday": today - datetime.timedelta(days=1),
             "tomorrow": today + datetime.timedelta(days=1)}
    word = words.get(text.lower())
    if word is not None:
        return f"{word:%Y%m%d}"
    if not re.fullmatch(r"\d{8}", text):
        raise MatchingValueError(f"{text!r} is not a date")
    try:
        datetime.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise MatchingValueError(f"{text!r} is not a date of the calendar") from None
    return text


def _time(text: str) -> str:
    match = _TIME.match(text)
    if not match or int(match.group(1)) > 23 or int(match.group(2) or 0) > 59 \
            or int(match.group(3) or 0) > 60:
        raise MatchingValueError(f"{text!r} is not a time")
    return text


def _datetime(text: str) -> str:
    if not _DATETIME.match(text):
        raise MatchingValueError(f"{text!r} is not a date and time")
    return text
