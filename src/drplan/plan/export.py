"""A loaded plan written back as plan YAML: what drplan understood, anchors and defaults resolved.

The output loads again to an equal plan (tests hold it to that), so it can be used
to normalise a plan or to see exactly what a shared anchor expanded into.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import yaml
from pydantic import BaseModel

from drplan.plan.durations import format_duration
from drplan.plan.model import Plan, Window
from drplan.plan.schedule import Schedule
from drplan.plan.secrets import SecretRef


def _plain(value: Any, defaults: bool = False) -> Any:
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {
            name: _plain(getattr(value, name), defaults)
            for name, info in fields.items()
            if defaults
            or info.is_required()
            or getattr(value, name) != info.get_default(call_default_factory=True)
        }
    if isinstance(value, dict):
        return {key: _plain(item, defaults) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, defaults) for item in value]
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, Schedule | SecretRef | Window):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):
        return f"{value * 100:g}%"  # every float in a plan is a percentage
    return value


def to_plan_data(plan: Plan, *, include_defaults: bool = False) -> dict[str, Any]:
    """The plan as the plain data a plan file holds."""
    data: dict[str, Any] = _plain(plan, include_defaults)
    return data


def to_yaml(plan: Plan) -> str:
    return yaml.safe_dump(to_plan_data(plan), sort_keys=False, allow_unicode=True, width=100)
