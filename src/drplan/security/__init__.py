"""Security: what drplan does after a breach, and the trails that show what was done.

Its terms (docs/security.md has each in full):

last clean point
    For a files system, the newest snapshot judged ``clean`` before the latest run of
    snapshots that are not (``scan``): each snapshot is judged ``clean``, ``suspicious``,
    ``compromised`` or ``unknown`` (cannot be read) from the signs ransomware leaves
    (files renamed to NAME.EXT, content that now looks encrypted, ransom notes), each
    signal held against the system's own history (``scan_signals``) on what changed since
    the snapshot before (``scan_changes``); YARA rules over what each snapshot brought
    (``scan_yara``) and an external malware scanner over restored snapshots
    (``scan_scanner``) may add findings. For PostgreSQL the last clean point is searched
    with scratch recoveries, in ``drills.last_clean``.
secret fingerprint
    Every credential the plan references, where it is used, an HMAC-SHA256 of its value
    under a key of this host's state directory (never the value nor a plain hash) and
    when that value last changed (``secrets_inventory``); each proven against its real
    service without changing anything there or telling anyone (``secrets_verify``).
evidence
    A compromised system copied as it is into a location under compliance-mode Object
    Lock: an ordinary encrypted snapshot tagged ``evidence`` with a canonical SHA-256
    manifest of what was read (``evidence``, ``evidence_copy``, ``evidence_manifest``),
    each capture and each later check of it (``evidence_verify``) in the incident's
    hash-chained timeline: the chain of custody.
audit trail
    Two hash chains. Every change through the web server and the API, in the catalog
    (``audit``). Every repository operation (backup, restore, copy, check, forget, prune,
    scan, key changes), as entries ``audit/<seq>-<hash>`` in each location it used, the
    other locations' heads as witnesses (``repo_audit`` the format, ``repo_audit_record``
    what one operation did, ``repo_audit_write`` appending, ``repo_audit_state`` this
    host's anchors, ``repo_audit_verify`` the checks of `drplan audit verify`).

Rotating the repository's master key is the repository's own (``repo.key_rotation``).
"""
