"""`drplan secrets rotate`: the plan's credentials moved to new values inside an incident,
in the order a security review checks, each step proven and recorded in the incident's
timeline (docs/security.md, "Rotating credentials").

Per credential, in this order only:

1. the new value set where drplan can set it (:mod:`secrets_rotate_managed`: a
   PostgreSQL role's password, the repository's key files); elsewhere a person set it at
   the provider before;
2. the new value proven at every use with the probes of `secrets verify`; when a use
   does not accept it, step 1 is undone and the failure recorded: nothing else changes;
3. ``secret_new_verified`` in the timeline, the new fingerprint in ``secrets-seen.json``;
4. the old value revoked where drplan can; elsewhere it is left to a person at the
   provider, and ``--confirm-revoked`` (:mod:`secrets_rotate_confirm`) goes on later;
5. the old value proven refused at every use (the service said no to it; one that did
   not answer proves nothing), and only then ``secret_old_revoked``.

The order is enforced where the entry is written (:meth:`Rotator.record_revoked` reads
the timeline back: :mod:`secrets_rotate_timeline`). Entries, output and errors carry
keyed fingerprints, never a value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drplan import clock
from drplan.errors import DrplanError, IncidentStateError, SecretMissingError
from drplan.plan.model import PostgresSystem
from drplan.security.secrets_inventory import (
    REPOSITORY_PASSWORD,
    Credential,
    Fingerprinter,
    History,
    read_value,
)
from drplan.security.secrets_rotate_managed import (
    Change,
    ChangeFailed,
    PgRole,
    repository_keys,
)
from drplan.security.secrets_rotate_proof import Checks, prove, with_values
from drplan.security.secrets_rotate_timeline import (
    FAILED,
    NEW_VERIFIED,
    NOT_VERIFIABLE,
    OLD_REVOKED,
    Rotation,
    not_yet,
    rotations,
)
from drplan.security.secrets_rotate_values import name_of
from drplan.security.secrets_verify import UNVERIFIABLE, mask

if TYPE_CHECKING:
    from drplan.incidents.service import Incidents
    from drplan.incidents.timeline import Event
    from drplan.plan.model import Plan

POSTGRES_PASSWORD = "postgres-password"


@dataclass
class Outcome:
    """What became of one credential: ``rotated`` (new verified, old refused), ``pending``
    (new verified, the old one awaits its revocation), ``revoked`` (confirmed refused),
    ``failed``, ``not verifiable`` or ``not set``."""

    reference: str
    kind: str
    status: str
    detail: str = ""
    old: str | None = None  # fingerprints
    new: str | None = None
    entries: list[int] = field(default_factory=list)
    revoke_at_provider: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "kind": self.kind, "status": self.status,
                "detail": self.detail, "old_fingerprint": self.old, "new_fingerprint": self.new,
                "entries": self.entries, "revoke_at_provider": self.revoke_at_provider}  # fmt: skip

    def line(self) -> str:
        prints = f"{self.old} -> {self.new}" if self.old and self.new else "-"
        return f"{self.status:<15} {self.reference}  {self.kind}  {prints}  {self.detail}"


@dataclass
class Rotator:
    """One command's rotations: the plan as read here, the incident they are recorded in."""

    plan: Plan
    service: Incidents
    incident: str
    actor: str
    state: Path  # the state directory: fingerprint key and secrets-seen.json
    warn: Callable[[str], None]
    masks: list[bytes] = field(default_factory=list)  # every value in play: kept out of details
    fingerprint: Fingerprinter = field(init=False)

    def __post_init__(self) -> None:
        self.fingerprint = Fingerprinter(self.state)

    def timeline(self) -> dict[str, Rotation]:
        found = self.service.load(self.incident)
        found.writable()
        return rotations(found.events)

    def record(self, kind: str, data: dict[str, Any]) -> Event:
        return self.service.record(self.incident, kind, self.actor, data, clock.now())

    def record_revoked(self, out: Outcome, data: dict[str, Any]) -> Event:
        """``secret_old_revoked``, only after the same rotation's ``secret_new_verified``."""
        found = self.timeline().get(out.reference)
        why = not_yet(found, out.reference, out.old or "", out.new or "")
        if why is not None or found is None:
            raise IncidentStateError(f"{why}: its old value is not recorded revoked",
                                     hint=f"rotate it first: `drplan secrets rotate {out.reference}"
                                     f" --incident {self.incident}` with its new value")  # fmt: skip
        return self.record(OLD_REVOKED, {**_about(out), "verified_entry": found.verified_entry,
                                         **data})  # fmt: skip

    def seen(self, reference: str, old: str, new: str) -> None:
        """The new fingerprint in secrets-seen.json, as of now (the old one first, so a
        history that never saw it still dates the change)."""
        history, now = History(self.state), clock.now()
        history.record(reference, old, now)
        history.record(reference, new, now)
        history.save()


def rotate(r: Rotator, chosen: list[tuple[Credential, bytes]]) -> list[Outcome]:
    """Rotate each credential to its new value (module docstring), one after the other."""
    before = r.timeline()
    current = {c.reference: read_value(c) for c, _ in chosen}
    r.masks = [v for v in [*(new for _, new in chosen), *(v for v, _ in current.values())] if v]
    # Both keys of an S3 location are proven together: the probes read every new value.
    proving = with_values(r.plan, {name_of(c): new for c, new in chosen})
    return [
        _rotate(r, proving, c, new, *current[c.reference], before.get(c.reference))
        for c, new in chosen
    ]


def _rotate(
    r: Rotator, proving: Plan, credential: Credential, new: bytes, old: bytes | None,
    problem: str | None, before: Rotation | None,
) -> Outcome:  # fmt: skip
    out = Outcome(credential.reference, credential.kind, "failed")
    if old is None:
        out.status = "not set"
        out.detail = f"its current value is needed to rotate it: {problem}"
        return out
    out.old, out.new = r.fingerprint(old), r.fingerprint(new)
    if before is not None and before.new == out.new:  # a rerun, the plan's value changed or not
        return _again(r, out, before)
    if new == old:
        out.detail = "the new value is the current one: nothing to rotate"
        return out
    unverifiable = [UNVERIFIABLE[u.kind] for u in credential.uses if u.kind in UNVERIFIABLE]
    if unverifiable:
        out.status, out.detail = "not verifiable", unverifiable[0]
        out.entries.append(r.record(NOT_VERIFIABLE, {**_about(out), "reason": out.detail}).seq)
        return out
    with contextlib.ExitStack() as held:
        changes = changes_for(r, credential, old, new, held)
        set_by_drplan, failure = _apply(changes)
        if failure is not None:
            return _failed(r, out, changes, "apply", failure, Checks([]))
        checks = prove(proving, credential, new, r.masks)
        if not checks.accepted:
            reason = f"the new value was not accepted: {checks.not_accepted()}"
            return _failed(r, out, changes, "verify", reason, checks)
        provider = [u.path for u in credential.uses if not any(u.path in c.covers for c in changes)]
        out.revoke_at_provider = provider
        verified = r.record(NEW_VERIFIED, {**_about(out), "uses": [u.path for u in credential.uses],
                                           "checks": checks.shown(), "set_by_drplan": set_by_drplan,
                                           "revoke_at_provider": provider})  # fmt: skip
        out.entries.append(verified.seq)
        r.seen(credential.reference, out.old, out.new)
        return revoke_old(r, out, credential, old, changes, confirming=False)


def _again(r: Rotator, out: Outcome, before: Rotation) -> Outcome:
    """A rerun with the same new value: what the timeline says, nothing done twice."""
    out.old = before.old
    out.entries.append(before.verified_entry)
    if before.revoked_entry is not None:
        out.status, out.detail = "rotated", f"already, in {r.incident}"
        out.entries.append(before.revoked_entry)
    else:
        out.revoke_at_provider = list(before.revoke_at_provider)
        out.status, out.detail = "pending", f"verified already, in {r.incident}; {_then(out)}"
    return out


def revoke_old(
    r: Rotator, out: Outcome, credential: Credential, old: bytes, changes: list[Change],
    confirming: bool, proving: Plan | None = None,
) -> Outcome:  # fmt: skip
    """The old value revoked where drplan can, then proven refused at every use (not
    while a person has yet to revoke it somewhere: ``--confirm-revoked`` does, later)."""
    revoked, problems = [], []
    for change in changes:
        try:
            revoked += change.revoke()
        except ChangeFailed as exc:
            problems.append(mask(str(exc), r.masks))
    if out.revoke_at_provider and not confirming:
        out.status = "pending"
        out.detail = f"new value verified; revoke the old one at its provider, then {_then(out)}"
        return out
    # The old value as the plan reads it here, unless the caller gives a plan reading it.
    checks = prove(proving or r.plan, credential, old, r.masks)
    if problems or not checks.refused:
        out.status = "failed" if confirming else "pending"
        still = problems[0] if problems else checks.not_refused()
        out.detail = f"the old value is not refused: {still}; when it is, {_then(out)}"
        return out
    by = "provider" if out.revoke_at_provider else "drplan"
    event = r.record_revoked(out, {"by": by, "checks": checks.shown(), "revoked": revoked})
    out.entries.append(event.seq)
    out.status = "revoked" if confirming else "rotated"
    out.detail = "old value refused" if confirming else "new value verified, old value refused"
    return out


def raise_for(outcomes: list[Outcome], confirming: bool) -> None:
    """The command's exit: 1 when one failed, else 5 when one is not set here, else 0."""
    failed = [o.reference for o in outcomes if o.status == "failed"]
    unset = [o.reference for o in outcomes if o.status == "not set"]
    if failed and confirming:
        raise DrplanError(f"{len(failed)} of {len(outcomes)} not proven refused: {', '.join(failed)}",
                          hint="each one's line names a service that still takes the old value or"
                          " did not answer; revoke it there and run again")  # fmt: skip
    if failed:
        raise DrplanError(f"{len(failed)} of {len(outcomes)} not rotated: {', '.join(failed)}",
                          hint="each one's line says why (and STILL CHANGED what could not be put"
                          " back); the failure is in the timeline; run again with a new value the"
                          " service takes")  # fmt: skip
    if unset:
        raise SecretMissingError(f"{len(unset)} not set here, so not rotated: {', '.join(unset)}",
                                 hint="export them (drplan needs the current value to change it"
                                 " and to prove it refused later) and run again")  # fmt: skip


# -- the parts ----------------------------------------------------------------------------


def changes_for(
    r: Rotator, credential: Credential, old: bytes, new: bytes, held: contextlib.ExitStack
) -> list[Change]:
    """What drplan changes itself for this credential (none: a person at the provider)."""
    changes: list[Change] = []
    for use in credential.uses:
        if use.kind == POSTGRES_PASSWORD:
            system = str(use.at[1])
            spec = r.plan.systems[system]
            assert isinstance(spec, PostgresSystem)  # the kind says so
            role = PgRole(system, spec, old, new, use.path)
            changes.append(held.enter_context(contextlib.closing(role)))
    if any(use.kind == REPOSITORY_PASSWORD for use in credential.uses):
        changes.append(held.enter_context(repository_keys(r.plan, old, new, r.warn)))
    return changes


def _apply(changes: list[Change]) -> tuple[list[str], str | None]:
    """Each change made, in turn: what each did, and why the first that failed did."""
    said = []
    for change in changes:
        try:
            said.append(change.apply())
        except ChangeFailed as exc:
            return said, str(exc)
    return said, None


def _failed(
    r: Rotator, out: Outcome, changes: list[Change], stage: str, reason: str, checks: Checks
) -> Outcome:
    """Everything a change did undone (the failing one's part too), and the failure recorded."""
    undone, left = [], []
    for change in reversed(changes):
        try:
            said = change.undo()
        except ChangeFailed as exc:
            left.append(mask(str(exc), r.masks))
            continue
        if said:
            undone.append(said)
    reason = mask(reason, r.masks)
    event = r.record(FAILED, {**_about(out), "stage": stage, "reason": reason,
                              "checks": checks.shown(), "undone": undone,
                              "left_changed": left})  # fmt: skip
    out.entries.append(event.seq)
    out.detail = f"{reason}; " + (
        f"STILL CHANGED: {'; '.join(left)}" if left else "nothing changed, nothing revoked"
    )
    return out


def _about(out: Outcome) -> dict[str, Any]:
    return {"reference": out.reference, "kind": out.kind, "old_fingerprint": out.old,
            "new_fingerprint": out.new}  # fmt: skip


def _then(out: Outcome) -> str:
    where = f" ({', '.join(out.revoke_at_provider)})" if out.revoke_at_provider else ""
    return f"`drplan secrets rotate --confirm-revoked {out.reference}`{where}"
