"""Time as drplan reads and reports it: aware UTC datetimes, RFC 3339 with a 'Z'.

Every command's JSON carries times in this form, so scripts parse one format.
``DRPLAN_NOW`` (an RFC 3339 time) pins "now" for reproducible reports and tests.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from drplan.errors import UsageError

NOW_ENV = "DRPLAN_NOW"


def now() -> datetime:
    """The current time in UTC, or the time pinned by ``$DRPLAN_NOW``."""
    pinned = os.environ.get(NOW_ENV)
    if pinned:
        try:
            return parse_rfc3339(pinned)
        except ValueError as exc:
            raise UsageError(
                f"${NOW_ENV}: {exc}", hint="unset it, or set an RFC 3339 time"
            ) from None
    return datetime.now(UTC)


def parse_rfc3339(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text}' is not an RFC 3339 time, e.g. 2026-11-25T10:15:00Z") from None
    if value.tzinfo is None:
        raise ValueError(
            f"'{text}' has no time zone; write it as RFC 3339, e.g. 2026-11-25T10:15:00Z"
        )
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """``2026-11-26T01:15:00Z``: seconds precision, always UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
