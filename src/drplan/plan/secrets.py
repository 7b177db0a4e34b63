"""Secret references: ``${ENV_VAR}`` in the plan, resolved only when a secret is used.

A plan never holds a secret value. Fields that carry credentials (webhook URLs,
routing keys, passwords, access keys) accept only a reference to an environment
variable; a literal is rejected so that a token pasted into a plan is caught
before the plan is committed. A :class:`SecretRef` prints, serialises and
compares as its reference, so nothing that renders a plan can leak the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer, PlainValidator, WithJsonSchema

from drplan.errors import SecretMissingError

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret held in an environment variable."""

    variable: str

    def __str__(self) -> str:
        return "${" + self.variable + "}"

    __repr__ = __str__

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        """The secret value; raises SecretMissingError naming the variable if unset."""
        env = os.environ if environ is None else environ
        value = env.get(self.variable)
        if value is None or value == "":
            raise SecretMissingError(
                f"environment variable {self.variable} is not set (the plan references ${{{self.variable}}})",
                hint=f"export {self.variable}=... before running drplan",
            )
        return value


def _parse(value: Any) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a secret reference like '${SLACK_WEBHOOK_URL}'")
    match = _REFERENCE.fullmatch(value.strip())
    if not match:
        # Never echo the value back: it may be the very secret we refuse to hold.
        raise ValueError(
            "secrets are not written into the plan; use a reference like '${SLACK_WEBHOOK_URL}'"
            " and set that environment variable"
        )
    return SecretRef(match.group(1))


Secret = Annotated[
    SecretRef,
    PlainValidator(_parse),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$"}),
]


def find_refs(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], SecretRef]]:
    """Every secret reference inside a plan (or any part of one), with its path."""
    if isinstance(value, SecretRef):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from find_refs(getattr(value, name), (*path, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from find_refs(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from find_refs(item, (*path, index))


def missing(refs: Iterable[SecretRef], environ: Mapping[str, str] | None = None) -> list[str]:
    """Names of the referenced variables that are unset or empty, sorted, without duplicates."""
    env = os.environ if environ is None else environ
    return sorted({ref.variable for ref in refs if not env.get(ref.variable)})
