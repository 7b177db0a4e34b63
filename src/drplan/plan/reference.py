"""docs/plan-reference.md, generated from the plan models so the reference cannot drift.

Run ``python -m drplan.plan.reference > docs/plan-reference.md`` (``make docs``)
after changing a model; a test fails while the file and the models disagree.
"""

from __future__ import annotations

import ast
import datetime as dt
import enum
import inspect
import itertools
import textwrap
import types
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from drplan.plan.durations import format_duration
from drplan.plan.model import Plan
from drplan.plan.model.base import NAME_PATTERN, NAME_RULE
from drplan.plan.model.response import Window
from drplan.plan.schedule import Schedule
from drplan.plan.secrets import SecretRef

INTRO = f"""# Plan reference

A drplan plan is one YAML file. This page lists every key, generated from the
schema in `src/drplan/plan/model/` (do not edit by hand: run `make docs`).

Conventions:

- **name**: the key of a mapping entry (a system, job, location, ...): {NAME_RULE}.
- **duration**: `15m`, `4h`, `1d`, `2w`, `30d`, `3mo` (30 days), `1y` (365 days), or
  ISO 8601 (`PT15M`, `P1D`). A bare number is an error: say the unit.
- **schedule**: a five-field cron expression (`*/15 * * * *`) or macro (`@daily`),
  evaluated in the job's time zone; an interval (`15m`, `every 4h`), which fires at
  whole multiples of the interval since the Unix epoch (UTC); `continuous`;
  `on EVENT` (`on deployment`: run by `drplan backup JOB` from a pipeline); `manual`.
- **secret**: a reference `${{ENV_VAR}}` to an environment variable. Values are never
  written into the plan, and drplan never prints them. `drplan plan validate` checks
  that every referenced variable is set (`--no-env` skips that).
- **percentage**: `95%` or `0.95`.
- **time window**: `0-1h`, `2h-8h`: from the start of an incident.
- Unknown keys are errors. Top-level keys starting with `x-` are ignored, so they
  can hold blocks shared with YAML anchors (`&name`, `*name`, `<<: *name`).
- In JSON output (`--json`) durations are seconds and times are RFC 3339 UTC.
"""


# Keys every variant or section shares, documented once here rather than on each model.
GENERIC = {
    "kind": "Selects this variant.",
    "description": "Free text for the people reading the plan.",
}


@dataclass
class _Section:
    model: type[BaseModel]
    path: str
    also: list[str] = field(default_factory=list)


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a union (Optional included), without None."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        return base, meta
    return annotation, []


def _type_name(annotation: Any, meta: list[Any] | None = None) -> str:
    annotation, inner_meta = _strip(annotation)
    meta = [*(meta or []), *inner_meta]
    options = _members(annotation)
    if len(options) > 1:
        return " or ".join(_type_name(o) for o in options)
    kind = options[0]
    if get_origin(kind) is Annotated:
        return _type_name(kind, meta)
    origin = get_origin(kind)
    if origin is list:
        return f"list of {_type_name(get_args(kind)[0])}"
    if origin is dict:
        return f"mapping of name to {_type_name(get_args(kind)[1])}"
    if origin is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in get_args(kind))
    if _is_model(kind):
        return f"[{kind.__name__}](#{_anchor(kind)})"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in kind)
    if any(getattr(m, "pattern", None) == NAME_PATTERN for m in meta):
        return "name"
    simple: dict[Any, str] = {
        timedelta: "duration",
        Schedule: "schedule",
        SecretRef: "secret",
        Window: "time window",
        float: "percentage",
        bool: "true/false",
        int: "integer",
        str: "text",
        dt.date: "date (YYYY-MM-DD)",
    }
    return simple.get(kind, getattr(kind, "__name__", str(kind)))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "-"
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if value in ("", [], {}):
        return "empty"
    if isinstance(value, float):
        return f"`{value * 100:g}%`"
    return f"`{value}`"


def _nested(annotation: Any) -> list[tuple[str, Any]]:
    """(path suffix, model) for every model reachable from one field's annotation."""
    annotation, _ = _strip(annotation)
    found: list[tuple[str, Any]] = []
    for member in _members(annotation):
        option, _ = _strip(member)
        origin = get_origin(option)
        if origin is list:
            found += [(f"[]{s}", m) for s, m in _nested(get_args(option)[0])]
        elif origin is dict:
            found += [(f".NAME{s}", m) for s, m in _nested(get_args(option)[1])]
        elif _is_model(option):
            found.append(("", option))
    return found


def _field_docs(model: type[BaseModel]) -> dict[str, str]:
    """The docstring under each field (PEP 257's attribute docstrings), from the source of
    the model and the models it extends."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not issubclass(cls, BaseModel) or cls is BaseModel:
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
        for field_node, doc_node in itertools.pairwise(body):
            if (
                isinstance(field_node, ast.AnnAssign)
                and isinstance(field_node.target, ast.Name)
                and isinstance(doc_node, ast.Expr)
                and isinstance(doc_node.value, ast.Constant)
                and isinstance(doc_node.value.value, str)
            ):
                docs[field_node.target.id] = inspect.cleandoc(doc_node.value.value)
    return docs


def _collect() -> list[_Section]:
    sections: dict[type[BaseModel], _Section] = {}
    queue: list[tuple[type[BaseModel], str]] = [(Plan, "")]
    while queue:
        model, path = queue.pop(0)
        if model in sections:
            sections[model].also.append(path)
            continue
        sections[model] = _Section(model, path)
        for name, info in model.model_fields.items():
            for suffix, nested in _nested(info.annotation):
                queue.append((nested, f"{path}.{name}{suffix}".lstrip(".")))
    return list(sections.values())


def _title(section: _Section) -> str:
    model = section.model
    tag = model.model_fields.get("kind")
    variant = (
        f" (kind: `{get_args(tag.annotation)[0]}`)"
        if tag and get_origin(tag.annotation) is Literal
        else ""
    )
    where = f"`{section.path}`" if section.path else "the plan file (top level)"
    return f"{where}{variant}"


def render_reference() -> str:
    out = [INTRO]
    for section in _collect():
        model = section.model
        out.append(f'<a id="{_anchor(model)}"></a>\n\n## {_title(section)}\n')
        doc = (model.__doc__ or "").strip()
        if doc and not doc.startswith(model.__name__ + "("):
            out.append(f"{doc}\n")
        if section.also:
            out.append("Also at: " + ", ".join(f"`{p}`" for p in section.also) + ".\n")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        docs = _field_docs(model)
        for name, info in model.model_fields.items():
            text = info.description or docs.get(name) or GENERIC.get(name, "")
            description = " ".join(text.split())
            kind = _type_name(info.annotation, list(info.metadata))
            out.append(f"| `{name}` | {kind} | {_default(info)} | {description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover - exercised by `make docs`
    print(render_reference(), end="")
