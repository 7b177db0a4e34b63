"""Shared building blocks of the plan schema: the strict base model, names, zones, percentages."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
NAME_RULE = "lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"


class PlanModel(BaseModel):
    """Strict: unknown keys are errors, instances are immutable once loaded.

    The docstrings under fields document them (docs/plan-reference.md reads them); pydantic
    is not asked to (``use_attribute_docstrings``): it would parse the source of every
    model at each start of drplan, 0.2 s of the 1 s a command took.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""The name of something the plan defines (a system, job, location, role, ...)."""


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone '{value}' (an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_zone)]


def _percent(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a percentage (e.g. '95%' or 0.95)")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"'{value}' is not a percentage (e.g. '95%' or 0.95)") from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise ValueError(f"{value!r} is not a percentage (e.g. '95%' or 0.95)")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"'{value}' is outside 0%..100%")
    return number


Percent = Annotated[
    float,
    BeforeValidator(_percent),
    PlainSerializer(lambda v: round(v, 6), return_type=float, when_used="json"),
    WithJsonSchema({"type": "string", "examples": ["95%", 0.95]}),
]
"""A fraction written as '95%' or 0.95; held and serialised as 0.95."""
