"""Loading a plan file: find it, parse it, validate it, and report every problem with its place.

Schema errors from pydantic are translated into messages written for the person
editing the plan: the unknown key and the keys allowed there (with a "did you
mean" when one is close), the missing key, the value and what would be accepted.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from drplan.errors import PlanInvalidError, PlanNotFoundError, Problem
from drplan.plan.model import Plan
from drplan.plan.model.base import NAME_RULE
from drplan.plan.references import check_references
from drplan.plan.source import PathKey, SourceMap, parse

DEFAULT_PLAN = "drplan.yaml"
PLAN_ENV = "DRPLAN_PLAN"
EXTENSION_PREFIX = "x-"


def resolve_plan_path(explicit: str | None) -> Path:
    """The plan file: ``--plan``, then ``$DRPLAN_PLAN``, then ``./drplan.yaml``."""
    for candidate, origin in ((explicit, "--plan"), (os.environ.get(PLAN_ENV), f"${PLAN_ENV}")):
        if candidate:
            path = Path(candidate)
            if not path.is_file():
                raise PlanNotFoundError(
                    f"plan file {candidate} (from {origin}) does not exist",
                    hint="check the path, or create a plan with `drplan init`",
                )
            return path
    path = Path(DEFAULT_PLAN)
    if not path.is_file():
        raise PlanNotFoundError(
            f"no plan given and no {DEFAULT_PLAN} in the current directory",
            hint=f"pass --plan FILE, set ${PLAN_ENV}, or create one with `drplan init`",
        )
    return path


@dataclass(frozen=True)
class PlanFile:
    """A loaded plan with the positions of what it says, for locating findings."""

    path: str
    plan: Plan
    source: SourceMap


def load_plan(path: Path) -> PlanFile:
    """Read, parse and validate a plan file; raise PlanInvalidError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PlanInvalidError(
            [Problem(str(path), 1, exc.start + 1, "", "the plan file is not UTF-8 text")]
        ) from None
    except OSError as exc:
        raise PlanNotFoundError(
            f"cannot read plan file {path}: {exc.strerror}",
            hint="check the path and its permissions",
        ) from None
    return load_plan_text(text, str(path))


def load_plan_text(text: str, filename: str) -> PlanFile:
    data, smap = parse(text, filename)
    if not isinstance(data, dict):
        raise PlanInvalidError(
            [smap.problem((), "a plan is a mapping of sections (version, name, objectives, ...)")]
        )
    # `x-` keys hold blocks shared through YAML anchors; they are not part of the plan.
    data = {k: v for k, v in data.items() if not k.startswith(EXTENSION_PREFIX)}
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanInvalidError([_translate(err, data, smap) for err in exc.errors()]) from None
    problems = [smap.problem(path, message) for path, message in check_references(plan)]
    if problems:
        raise PlanInvalidError(problems)
    return PlanFile(filename, plan, smap)


def _translate(err: ErrorDetails, data: Any, smap: SourceMap) -> Problem:
    """One pydantic error as a located problem in the plan author's terms."""
    path, is_key = _data_path(err["loc"], data)
    kind = err["type"]
    leaf = str(err["loc"][-1]) if err["loc"] else ""
    if kind in {"missing", "union_tag_not_found"}:
        missing = (
            leaf if kind == "missing" else str(err.get("ctx", {}).get("discriminator", "kind"))
        )
        missing = missing.strip("'")
        return smap.problem(path, f"missing required key '{missing}'")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(err["loc"][:-1])
        return smap.problem(path, _unknown_key(leaf, allowed), key=True)
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return smap.problem(
            (*path, "kind"),
            f"kind '{ctx.get('tag')}' is not one of {ctx.get('expected_tags')}",
        )
    if kind == "string_pattern_mismatch" and is_key:
        return smap.problem(path, f"name '{path[-1]}' must be {NAME_RULE}", key=True)
    return smap.problem(path, _message(err))


def _message(err: ErrorDetails) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx", {})
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind in ("literal_error", "enum"):
        return f"{shown} is not allowed (expected {ctx.get('expected')})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys, got {_yaml_type(value)}"
    if kind == "list_type":
        return f"expected a list, got {_yaml_type(value)}"
    if kind.startswith(("string_type", "str_type")):
        return f"expected text, got {_yaml_type(value)}"
    if kind == "string_pattern_mismatch":
        return f"{shown} does not match the expected form ({ctx.get('pattern')})"
    if kind in ("too_short", "too_long"):
        return err["msg"].replace("List", "the list").replace("Dictionary", "the mapping")
    return f"{shown}: {err['msg'][0].lower()}{err['msg'][1:]}"


def _yaml_type(value: Any) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "true/false",
        type(None): "nothing",
    }
    for kind, name in names.items():
        if isinstance(value, kind):
            return f"{name} ({value!r})" if kind in (str, bool) else name
    return f"a number ({value!r})" if isinstance(value, int | float) else type(value).__name__


def _unknown_key(key: str, allowed: list[str]) -> str:
    if not allowed:
        return f"unknown key '{key}'"
    close = difflib.get_close_matches(key, allowed, n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key '{key}' ({guess}allowed: {', '.join(allowed)})"


def _data_path(loc: tuple[int | str, ...], data: Any) -> tuple[PathKey, bool]:
    """Follow pydantic's error location through the data, dropping union and tag steps.

    Returns the path in the plan and whether it ends at a mapping key (``[key]``).
    """
    path: list[str | int] = []
    current = data
    for step in loc:
        if step == "[key]":
            return tuple(path), True
        if isinstance(current, dict) and step in current:
            current = current[step]
        elif isinstance(current, list) and isinstance(step, int) and step < len(current):
            current = current[step]
        else:
            continue  # a union member or tag name, not a place in the data
        path.append(step)
    return tuple(path), False


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys of the model at ``loc``, found by walking the schema's type annotations."""
    candidates: list[Any] = [Plan]
    for step in loc:
        nxt: list[Any] = []
        for kind in candidates:
            nxt.extend(_step_type(kind, step))
        candidates = nxt or candidates
    keys = {name for kind in candidates if _is_model(kind) for name in kind.model_fields}
    return sorted(keys)


def _step_type(kind: Any, step: int | str) -> list[Any]:
    if _is_model(kind):
        if isinstance(step, str) and step in kind.model_fields:
            return _unwrap(kind.model_fields[step].annotation)
        # A discriminated-union step names the member model by its `kind` value.
        tag = kind.model_fields.get("kind")
        return [kind] if tag is not None and step in get_args(tag.annotation) else []
    origin = get_origin(kind)
    if origin is dict:
        return _unwrap(get_args(kind)[1])
    if origin is list:
        return _unwrap(get_args(kind)[0])
    return []


def _unwrap(annotation: Any) -> list[Any]:
    """Flatten Optional, unions and Annotated into the concrete types they allow."""
    args = get_args(annotation)
    origin = get_origin(annotation)
    if origin is None or origin in (dict, list):
        return [annotation]
    if args and hasattr(annotation, "__metadata__"):
        return _unwrap(args[0])
    return [t for arg in args for t in _unwrap(arg) if t is not type(None)]


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)
