"""Loading a plan file: find it, parse it, validate it, and report every problem with its place.

Schema errors from pydantic are translated into messages written for the person
editing the plan: the unknown key and the keys allowed there (with a "did you
mean" when one is close), the missing key, the value and what would be accepted.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from drplan.errors import PlanInvalidError, PlanNotFoundError, Problem
from drplan.plan.model import Plan
from drplan.plan.model.base import NAME_PATTERN, NAME_RULE
from drplan.plan.references import check_references
from drplan.plan.source import PathKey, SourceMap, parse, unique_problems

DEFAULT_PLAN = "drplan.yaml"
PLAN_ENV = "DRPLAN_PLAN"
EXTENSION_PREFIX = "x-"


def resolve_plan_path(explicit: str | None, origin: str = "--plan") -> Path:
    """The plan file: the one given (by ``origin``), else ``./drplan.yaml``."""
    if explicit:
        path = Path(explicit)
        if path.is_dir():
            raise PlanNotFoundError(
                f"plan file {explicit} (from {origin}) is a directory",
                hint="give the plan's YAML file, e.g. drplan.yaml",
            )
        if not path.is_file():
            raise PlanNotFoundError(
                f"plan file {explicit} (from {origin}) does not exist",
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
    data, smap, found = parse(text, filename)
    if not isinstance(data, dict):
        raise PlanInvalidError(
            [smap.problem((), "a plan is a mapping of sections (version, name, objectives, ...)")]
        )
    # `x-` keys hold blocks shared through YAML anchors; they are not part of the plan.
    data = {k: v for k, v in data.items() if not k.startswith(EXTENSION_PREFIX)}
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        translated = [_translate(err, data, smap) for err in exc.errors()]
        raise PlanInvalidError(unique_problems([*found, *translated])) from None
    if found:
        raise PlanInvalidError(found)
    # References are checked once the schema holds: they need a whole plan to look in.
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
        tag = ctx.get("tag") if not any(str(p) in SENSITIVE_KEYS for p in path) else "this"
        return smap.problem(
            (*path, "kind"), f"kind '{tag}' is not one of {ctx.get('expected_tags')}"
        )
    if kind == "string_pattern_mismatch" and is_key:
        return smap.problem(path, f"name '{path[-1]}' must be {NAME_RULE}", key=True)
    return smap.problem(path, _message(err, path))


# Where a value may be a credential pasted in the wrong place: never echo it back.
SENSITIVE_KEYS = frozenset(
    {
        "channels",
        "password",
        "secret_access_key",
        "access_key_id",
        "routing_key",
        "api_key",
        "webhook_url",
        "url",
        "signing_secret",
        "connection",
        "password_command",
    }
)
# What a pattern-checked field expects, in words.
PATTERN_WORDS = {
    NAME_PATTERN: f"a name of {NAME_RULE}",
    r"^/": "an absolute path",
    r"^https?://": "an http:// or https:// URL",
    r"^#": "a channel name starting with '#'",
    r"^[^@\s]+@[^@\s]+$": "an e-mail address",
    r"^\+?[0-9][0-9 ()-]{2,}$": "a phone number such as +1-555-0100",
    r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$": "a bucket name (3-63 lowercase letters, digits, '.', '-')",
}


def _shown(value: Any, path: PathKey) -> str:
    if any(str(part) in SENSITIVE_KEYS for part in path):
        return "the value"
    if isinstance(value, dict | list):
        return _yaml_type(value)
    if isinstance(value, dt.date):
        return f"'{value.isoformat()}'"
    return repr(value)


def _message(err: ErrorDetails, path: PathKey) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx", {})
    shown = _shown(value, path)
    reveal = shown != "the value"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind in ("literal_error", "enum"):
        return f"{shown} is not allowed (expected {ctx.get('expected')})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys, got {_yaml_type(value, reveal)}"
    if kind == "list_type":
        return f"expected a list, got {_yaml_type(value, reveal)}"
    if kind.startswith(("string_type", "str_type")):
        return f"expected text, got {_yaml_type(value, reveal)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_yaml_type(value, reveal)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_yaml_type(value, reveal)}"
    if kind in ("date_type", "date_parsing", "date_from_datetime_parsing"):
        return f"expected a date (YYYY-MM-DD), got {_yaml_type(value, reveal)}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        return f"{shown} is not {PATTERN_WORDS.get(pattern, f'of the form {pattern}')}"
    if kind == "too_short":
        return "must not be empty"
    if kind in ("less_than_equal", "greater_than_equal", "greater_than", "less_than"):
        bound = ctx.get("le", ctx.get("ge", ctx.get("gt", ctx.get("lt"))))
        word = {
            "less_than_equal": "at most",
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than": "less than",
        }[kind]
        return f"{shown} is out of range: it must be {word} {bound}"
    return f"{shown}: {err['msg'][0].lower()}{err['msg'][1:]}"


def _yaml_type(value: Any, reveal: bool = True) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "true/false",
        type(None): "nothing",
    }
    for kind, name in names.items():
        if isinstance(value, kind):
            return f"{name} ({value!r})" if kind in (str, bool) and reveal else name
    return f"a number ({value!r})" if isinstance(value, int | float) else type(value).__name__


def _unknown_key(key: str, allowed: list[str]) -> str:
    if not allowed:
        return f"unknown key '{key}'"
    close = difflib.get_close_matches(key, allowed, n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key '{key}' ({guess}allowed: {', '.join(allowed)})"


def _data_path(loc: tuple[int | str, ...], data: Any) -> tuple[PathKey, bool]:
    """Follow pydantic's error location through the data, dropping discriminator steps.

    The schema is walked alongside: where it holds a union of models told apart by
    ``kind``, pydantic inserts the tag into the location, and that step is not a key
    of the data (even when the data happens to have a key of that name, like a
    command system's ``command``). Returns the path and whether it ends at a key.
    """
    path: list[str | int] = []
    current = data
    kinds: list[Any] = [Plan]
    for step in loc:
        if step == "[key]":
            return tuple(path), True
        variants = _tagged(kinds)
        if isinstance(step, str) and step in variants:
            kinds = [variants[step]]
            continue
        if isinstance(current, dict) and step in current:
            current = current[step]
            path.append(step)
        elif isinstance(current, list) and isinstance(step, int) and step < len(current):
            current = current[step]
            path.append(step)
        kinds = [t for kind in kinds for t in _step_type(kind, step)] or kinds
    return tuple(path), False


def _tagged(kinds: list[Any]) -> dict[str, Any]:
    """The models among ``kinds`` by their ``kind`` tag, when there are several (a union)."""
    models = [k for k in kinds if _is_model(k) and "kind" in k.model_fields]
    if len(models) < 2:
        return {}
    return {tag: m for m in models for tag in get_args(m.model_fields["kind"].annotation)}


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys of the model at ``loc``, found by walking the schema's type annotations."""
    candidates: list[Any] = [Plan]
    for step in loc:
        variants = _tagged(candidates)
        if isinstance(step, str) and step in variants:
            candidates = [variants[step]]
            continue
        candidates = [t for kind in candidates for t in _step_type(kind, step)] or candidates
    keys = {name for kind in candidates if _is_model(kind) for name in kind.model_fields}
    return sorted(keys)


def _step_type(kind: Any, step: int | str) -> list[Any]:
    if _is_model(kind):
        if isinstance(step, str) and step in kind.model_fields:
            return _unwrap(kind.model_fields[step].annotation)
        return []
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
