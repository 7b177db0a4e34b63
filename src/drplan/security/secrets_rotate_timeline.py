"""What an incident's timeline says of its credential rotations, and the rule that keeps
their order: an old value is recorded revoked only after its new value was recorded
verified, in the same incident, for the same pair of fingerprints.

Entry kinds (``data`` holds fingerprints, never a value):

``secret_new_verified``
    the new value proven at every use: ``reference``, ``kind``, ``uses``,
    ``old_fingerprint``, ``new_fingerprint``, ``checks`` (use, what the service said),
    ``set_by_drplan`` (what drplan changed), ``revoke_at_provider`` (uses whose old value
    a person must revoke);
``secret_old_revoked``
    the old value proven refused at every use: the same reference and fingerprints,
    ``verified_entry`` (the entry above), ``by`` (``drplan`` or ``provider``), ``checks``,
    ``revoked`` (key files revoked, and until when a lock keeps one);
``secret_rotation_failed``
    a new value that did not prove out: ``stage``, ``reason``, ``undone``, and
    ``left_changed`` when something could not be put back;
``secret_not_verifiable``
    a new value given for a credential no probe can prove (a Slack webhook): recorded,
    never marked verified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from drplan.incidents.timeline import Event

NEW_VERIFIED = "secret_new_verified"
OLD_REVOKED = "secret_old_revoked"
FAILED = "secret_rotation_failed"
NOT_VERIFIABLE = "secret_not_verifiable"


@dataclass(frozen=True)
class Rotation:
    """A reference's latest verified rotation in an incident."""

    reference: str
    old: str  # fingerprints
    new: str
    verified_entry: int
    revoke_at_provider: tuple[str, ...] = ()
    revoked_entry: int | None = None


def rotations(events: Iterable[Event]) -> dict[str, Rotation]:
    """Each reference's latest verified rotation, with its revocation if one was recorded."""
    found: dict[str, Rotation] = {}
    for event in events:
        data = event.data
        if event.kind == NEW_VERIFIED:
            found[data["reference"]] = Rotation(
                data["reference"], data["old_fingerprint"], data["new_fingerprint"], event.seq,
                tuple(data.get("revoke_at_provider", ())),
            )  # fmt: skip
        elif event.kind == OLD_REVOKED:
            known = found.get(data["reference"])
            if known and (known.old, known.new) == (
                data["old_fingerprint"],
                data["new_fingerprint"],
            ):
                found[known.reference] = replace(known, revoked_entry=event.seq)
    return found


def not_yet(rotation: Rotation | None, reference: str, old: str, new: str) -> str | None:
    """Why the old value ``old`` of ``reference`` may not be recorded revoked now (None:
    it may): its new value ``new`` must have been recorded verified first."""
    if rotation is None:
        return f"no new value of {reference} was verified in this incident"
    if (rotation.old, rotation.new) != (old, new):
        return (f"the rotation of {reference} verified in this incident is {rotation.old} ->"
                f" {rotation.new}, not {old} -> {new}")  # fmt: skip
    if rotation.revoked_entry is not None:
        return f"the old value of {reference} was recorded revoked already (entry {rotation.revoked_entry})"
    return None


def _fingerprints(d: dict[str, Any]) -> str:
    return f"{d['reference']} ({d['old_fingerprint']} -> {d['new_fingerprint']})"


def _verified(d: dict[str, Any]) -> str:
    provider = d.get("revoke_at_provider") or []
    then = f"; the old one to be revoked at the provider: {', '.join(provider)}" if provider else ""
    return f"new value of {_fingerprints(d)} verified{then}"


# One line per entry kind, for `drplan incident timeline` (incidents.view).
SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    NEW_VERIFIED: _verified,
    OLD_REVOKED: lambda d: (f"old value of {_fingerprints(d)} revoked (by {d['by']}): refused"
                            f" at every use, after entry {d['verified_entry']}"),
    FAILED: lambda d: (f"new value of {_fingerprints(d)} NOT verified ({d['stage']}): {d['reason']}"
                       + ("; STILL CHANGED: " + "; ".join(d["left_changed"])
                          if d.get("left_changed") else "; nothing changed")),
    NOT_VERIFIABLE: lambda d: f"new value of {_fingerprints(d)} cannot be verified: {d['reason']}",
}  # fmt: skip
