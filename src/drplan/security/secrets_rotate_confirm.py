"""`drplan secrets rotate --confirm-revoked`: the old value of a rotated credential
recorded revoked once a person revoked it at its provider, and only once drplan proved
every use refuses it, in the incident where its new value was recorded verified.

The old value is not kept anywhere (only its fingerprint, in the timeline), so drplan
needs it once more to try it: from ``--old-values FILE``, ``OLD_NAME``, or the value the
plan still reads here. Each is taken only if its keyed fingerprint is the one the
timeline recorded as the old: a new value given by mistake is never tried as the old.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from drplan.errors import IncidentStateError, UsageError
from drplan.security.secrets_inventory import Credential
from drplan.security.secrets_rotate import Outcome, Rotator, changes_for, revoke_old
from drplan.security.secrets_rotate_proof import with_values
from drplan.security.secrets_rotate_timeline import Rotation
from drplan.security.secrets_rotate_values import name_of, old_candidates


def confirm(
    r: Rotator, credentials: list[Credential], named: bool, old_values: dict[str, bytes],
    environ: Mapping[str, str],
) -> list[Outcome]:  # fmt: skip
    """Record the old value of each credential revoked, once proven refused at every use:
    only those whose new value this incident recorded verified (IncidentStateError for
    one named that it did not: the order is the point)."""
    done = r.timeline()
    if named:
        for credential in credentials:
            if credential.reference not in done:
                raise IncidentStateError(f"no new value of {credential.reference} was verified"
                                         f" in {r.incident}: its old value cannot be recorded"
                                         " revoked before",
                                         hint=f"rotate it first: `drplan secrets rotate"
                                         f" {credential.reference} --incident {r.incident}`")  # fmt: skip
    else:
        if not done:
            raise IncidentStateError(f"no new value was verified in {r.incident}: no old value"
                                     " can be recorded revoked",
                                     hint="`drplan secrets rotate` with the new values first")  # fmt: skip
        credentials = [c for c in credentials if c.reference in done]
    olds = {c.reference: _old_value(r, c, done[c.reference], old_values, environ)
            for c in credentials if done[c.reference].revoked_entry is None}  # fmt: skip
    r.masks = list(olds.values())
    proving = with_values(r.plan, {name_of(c): olds[c.reference] for c in credentials
                                   if c.reference in olds})  # fmt: skip
    outcomes = []
    for credential in credentials:
        found = done[credential.reference]
        out = Outcome(credential.reference, credential.kind, "revoked", old=found.old,
                      new=found.new, entries=[found.verified_entry],
                      revoke_at_provider=list(found.revoke_at_provider))  # fmt: skip
        if found.revoked_entry is not None:
            out.detail = f"recorded revoked already (entry {found.revoked_entry})"
            out.entries.append(found.revoked_entry)
        else:
            with contextlib.ExitStack() as held:
                old = olds[credential.reference]
                changes = changes_for(r, credential, old, b"", held)
                out = revoke_old(r, out, credential, old, changes, True, proving)
        outcomes.append(out)
    return outcomes


def _old_value(r: Rotator, credential: Credential, found: Rotation, given: dict[str, bytes],
               environ: Mapping[str, str]) -> bytes:  # fmt: skip
    for value in old_candidates(credential, given, environ):
        if r.fingerprint(value) == found.old:
            return value
    name = name_of(credential)
    raise UsageError(f"no old value of {credential.reference} (fingerprint {found.old}) is given"
                     " here: drplan must try it to prove it refused",
                     hint=f"set OLD_{name}, or put {name}=... in --old-values FILE")  # fmt: skip
