"""Durations as plans write them: ``15m``, ``4h``, ``1d12h``, ``1y``, or ISO 8601 ``PT15M``.

A duration is held as a :class:`datetime.timedelta`. Calendar units are fixed
lengths so that objectives compare exactly: a week is 7 days, a month (ISO ``M``
in the date part, or ``mo``) is 30 days, a year is 365 days. Plans state
objectives such as "1 year of fulls"; a day more or less in a leap year does not
change any decision drplan makes from them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

UNIT_SECONDS: dict[str, int] = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "y": 365 * 86400,
}

_SHORT = re.compile(r"(\d+(?:\.\d+)?)\s*(mo|[smhdwy])", re.IGNORECASE)
_ISO = re.compile(
    r"P(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<mo>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?"
    r"(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
EXAMPLES = "e.g. '15m', '4h', '1d', '30d', '1y' or ISO 8601 'PT15M'"


# No objective, retention or schedule in a plan spans a century; longer is a typo.
MAX_DURATION = timedelta(days=100 * 365)


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ValueError with a message fit for a user."""
    value = _parse(text)
    if value > MAX_DURATION:
        raise ValueError(f"'{text}' is longer than 100 years")
    return value


def _parse(text: str) -> timedelta:
    raw = text.strip()
    if not raw:
        raise ValueError(f"empty duration ({EXAMPLES})")
    if raw[0] in "Pp":
        return _parse_iso(raw, text)
    pos, total = 0, 0.0
    compact = raw.replace(" ", "")
    while pos < len(compact):
        match = _SHORT.match(compact, pos)
        if not match:
            raise ValueError(f"'{text}' is not a duration ({EXAMPLES})")
        total += float(match.group(1)) * UNIT_SECONDS[match.group(2).lower()]
        pos = match.end()
    return _seconds_to_delta(total, text)


def _seconds_to_delta(total: float, text: str) -> timedelta:
    if total > MAX_DURATION.total_seconds():
        raise ValueError(f"'{text}' is longer than 100 years")
    return timedelta(seconds=total)


def _parse_iso(raw: str, text: str) -> timedelta:
    match = _ISO.fullmatch(raw)
    if not match or not any(match.groupdict().values()) or raw.upper().endswith("T"):
        raise ValueError(f"'{text}' is not an ISO 8601 duration ({EXAMPLES})")
    seconds = sum(
        float(value) * UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value
    )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Shortest exact rendering in plan units: 900 s is '15m', 93600 s is '1d2h'."""
    total = value.total_seconds()
    if not total.is_integer():
        return f"{total:g}s"  # sub-second: plain seconds, which parse back exactly
    seconds = int(total)
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("y", "d", "h", "m", "s"):
        size = UNIT_SECONDS[unit]
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


def seconds(value: timedelta) -> int | float:
    """Seconds as JSON carries them: an integer when whole, as plan durations nearly always are."""
    total = value.total_seconds()
    return int(total) if total.is_integer() else total


def _coerce(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if value is None:
        raise ValueError(f"a duration is missing here ({EXAMPLES})")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration ({EXAMPLES})")
    if not isinstance(value, str):
        # A bare number is ambiguous (seconds? minutes?); make the author say.
        raise ValueError(f"{value!r} has no unit ({EXAMPLES})")
    return parse_duration(value)


def _positive(value: Any) -> timedelta:
    result = _coerce(value)
    if result <= timedelta(0):
        raise ValueError(f"'{value}' must be longer than zero ({EXAMPLES})")
    return result


_DURATION_SCHEMA = WithJsonSchema({"type": "string", "examples": ["15m", "4h", "PT15M"]})

Duration = Annotated[
    timedelta,
    BeforeValidator(_positive),
    PlainSerializer(seconds, when_used="json"),
    _DURATION_SCHEMA,
]
"""A positive duration; serialises to seconds (the JSON contract of every command)."""
