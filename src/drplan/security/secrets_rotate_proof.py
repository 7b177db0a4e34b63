"""Trying a value the plan does not read (a new one, or an old one) at every use of a
credential, with the probes of `secrets verify`, for `secrets rotate`.

PostgreSQL, SMTP, registry and status page probes take the value itself. S3 and etcd
probes sign with the references of the plan's location or system (both keys of an S3
location go together): :func:`with_values` gives them a plan whose references read the
values given here over the environment, and ``os.environ`` is never changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drplan.plan.secrets import SecretRef
from drplan.security.secrets_verify import Attempt, attempt, probes_for

if TYPE_CHECKING:
    from drplan.plan.model import Plan
    from drplan.security.secrets_inventory import Credential


@dataclass(frozen=True)
class Checks:
    """One value tried at every use: (plan path, what its service answered)."""

    tried: list[tuple[str, Attempt]]

    @property
    def accepted(self) -> bool:
        """Every use's service took the value (and at least one was asked)."""
        return bool(self.tried) and all(a.status == "ok" for _, a in self.tried)

    @property
    def refused(self) -> bool:
        """Every use's service said no to the value: one that did not answer proves nothing."""
        return bool(self.tried) and all(a.refused for _, a in self.tried)

    def not_accepted(self) -> str:
        """The first use whose service did not take the value, and what it said."""
        return self._first(lambda a: a.status != "ok")

    def not_refused(self) -> str:
        """The first use whose service did not say no to the value, and what it said."""
        return self._first(lambda a: not a.refused)

    def _first(self, wrong: Callable[[Attempt], bool]) -> str:
        return next((f"{path}: {a.detail}" for path, a in self.tried if wrong(a)),
                    "no service to ask")  # fmt: skip

    def shown(self) -> list[dict[str, Any]]:
        return [{"use": path, "status": a.status, "refused": a.refused, "detail": a.detail}
                for path, a in self.tried]  # fmt: skip


def prove(plan: Plan, credential: Credential, value: bytes, masks: list[bytes]) -> Checks:
    """``value`` tried at every use of ``credential`` (each service asked once); details
    carry none of ``masks``."""
    done: dict[str, Attempt] = {}
    tried = []
    for use in credential.uses:
        for key, probe in probes_for(plan, use, value):
            if key not in done:
                done[key] = attempt(probe, masks)
            tried.append((use.path, done[key]))
    return Checks(tried)


@dataclass(frozen=True, repr=False)
class _Given(SecretRef):
    """A reference read from a mapping given here, not from the environment."""

    environ: Mapping[str, str] = field(default_factory=dict, compare=False)

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        return super().resolve(self.environ)


def with_values(plan: Plan, values: Mapping[str, bytes]) -> Plan:
    """The plan with its locations' and systems' references reading ``values`` (by
    variable name) over the environment."""
    environ = {**os.environ, **{k: v.decode("utf-8", "surrogateescape") for k, v in values.items()}}

    def swapped(model: Any) -> Any:
        refs = {name: getattr(model, name) for name in type(model).model_fields}
        update = {
            n: _Given(v.variable, environ) for n, v in refs.items() if isinstance(v, SecretRef)
        }
        return model.model_copy(update=update) if update else model

    return plan.model_copy(update={
        "locations": {n: swapped(m) for n, m in plan.locations.items()},
        "systems": {n: swapped(m) for n, m in plan.systems.items()},
    })  # fmt: skip
