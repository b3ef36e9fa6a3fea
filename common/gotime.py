"""Go-layout timestamps (`2006-01-02 15:04:05.999999999 -0700 MST`) for the kube-queue annotations, to the ns.

Times are plain ``int`` nanoseconds since the Unix epoch: a ``datetime`` holds only microseconds, and
the annotations the guide shows carry nine fraction digits (``2025-01-10 01:36:24.641181026 +0000 UTC``).
We always write UTC; we read any offset and any zone abbreviation (the offset decides, the abbreviation
is informational, as in Go's ``time.Parse``), the `` m=+132100.596012828`` monotonic reading that Go's
``Time.String()`` appends (it is process-local and ignored), and RFC 3339 as a courtesy.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

__all__ = [
    "GoTimeError",
    "format_duration",
    "format_go",
    "format_rfc3339",
    "from_datetime",
    "parse_duration",
    "parse_go",
    "to_datetime",
]

_NS = 10**9
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_MIN_NS = (dt.date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400 * _NS
_MAX_NS = (dt.date(9999, 12, 31).toordinal() - _EPOCH_ORDINAL + 1) * 86_400 * _NS - 1
_MAX_LENGTH = 100

_GO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2}) (?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r" (?P<sign>[+-])(?P<oh>\d{2})(?P<om>\d{2})"
    r" (?:[A-Za-z]{1,10}|[+-]\d{2}(?:\d{2})?)"  # MST, UTC, CEST; Go writes "+08" for zones without one
    r"(?: m=[+-]\d+(?:\.\d{1,9})?)?"
)
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>\d{2}):(?P<om>\d{2}))"
)


class GoTimeError(ValueError):
    """A string that is not a timestamp in Go's layout (or RFC 3339), or a time out of range."""


def format_go(ns: int) -> str:
    """`2025-01-10 01:36:24.641181026 +0000 UTC`: UTC, fraction trimmed of trailing zeros, no dot when zero."""
    if isinstance(ns, bool) or not isinstance(ns, int):
        raise GoTimeError(f"a timestamp is an int of nanoseconds since the epoch, not {ns!r}")
    if not _MIN_NS <= ns <= _MAX_NS:
        raise GoTimeError(f"timestamp {ns} ns is outside years 0001..9999")
    seconds, frac = divmod(ns, _NS)
    days, second_of_day = divmod(seconds, 86_400)
    date = dt.date.fromordinal(_EPOCH_ORDINAL + days)
    hours, rest = divmod(second_of_day, 3600)
    minutes, secs = divmod(rest, 60)
    fraction = "." + f"{frac:09d}".rstrip("0") if frac else ""
    return f"{date.isoformat()} {hours:02d}:{minutes:02d}:{secs:02d}{fraction} +0000 UTC"


def format_rfc3339(ns: int) -> str:
    """`2025-01-10T01:36:24Z` (the CRDs' date-time format; whole seconds, truncated)."""
    return to_datetime(ns).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_go(text: str) -> int:
    """Nanoseconds since the epoch of a Go-layout (or RFC 3339) timestamp. Raises GoTimeError naming it."""
    if not isinstance(text, str):
        raise GoTimeError(f"invalid timestamp {text!r}: expected a string")
    match = None
    if len(text) <= _MAX_LENGTH:
        match = _GO.fullmatch(text) or _RFC3339.fullmatch(text)
    if match is None:
        raise GoTimeError(
            f"invalid timestamp {text!r}: expected Go's layout '2006-01-02 15:04:05.999999999 -0700 MST' "
            "(e.g. '2025-01-10 01:36:24.641181026 +0000 UTC') or RFC 3339"
        )
    try:
        date = dt.date.fromisoformat(match["date"])
        clock = dt.time(int(match["h"]), int(match["m"]), int(match["s"]))
    except ValueError as exc:
        raise GoTimeError(f"invalid timestamp {text!r}: {exc}") from None
    offset = 0
    if match["sign"]:
        oh, om = int(match["oh"]), int(match["om"])
        if oh > 23 or om > 59:
            raise GoTimeError(f"invalid timestamp {text!r}: zone offset out of range")
        offset = (oh * 3600 + om * 60) * (-1 if match["sign"] == "-" else 1)
    frac = int((match["frac"] or "").ljust(9, "0"))
    seconds = (
        (date.toordinal() - _EPOCH_ORDINAL) * 86_400
        + clock.hour * 3600
        + clock.minute * 60
        + clock.second
        - offset
    )
    ns = seconds * _NS + frac
    if not _MIN_NS <= ns <= _MAX_NS:
        raise GoTimeError(f"invalid timestamp {text!r}: outside years 0001..9999 in UTC")
    return ns


def from_datetime(moment: dt.datetime) -> int:
    """Exact nanoseconds since the epoch of an aware datetime (a naive one is refused: which zone?)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise GoTimeError(f"a naive datetime has no zone: {moment.isoformat()}")
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000


def to_datetime(ns: int) -> dt.datetime:
    """The UTC datetime of a timestamp, truncated to microseconds (datetime holds no more)."""
    if not _MIN_NS <= ns <= _MAX_NS:
        raise GoTimeError(f"timestamp {ns} ns is outside years 0001..9999")
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)


# --- Go durations (time.ParseDuration), used by the estimate and by the preemption grace ----------------

_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``time.ParseDuration``: "1h30m", "90s", "1.5h", "300ms"); ValueError if not one."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a Go duration (like 45m, 1h30m, 90s)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError(f"{text!r} is not a Go duration (like 45m, 1h30m, 90s)")
    return sign * total


def format_duration(seconds: float) -> str:
    """Whole seconds the Go way: ``3m12s``, ``1h0m5s``, ``45s``, ``0s``."""
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"
