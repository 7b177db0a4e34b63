"""Security: the audit trail of every change made through the web server and the API
(``audit``), and the last clean point (``scan``): each snapshot of a files system judged
``clean``, ``suspicious`` or ``compromised`` from the signs ransomware leaves (files
renamed to NAME.EXT, content that now looks encrypted, ransom notes), each signal held
against the system's own history (``scan_signals``) on what changed since the snapshot
before (``scan_changes``); and the plan's credentials (``secrets_inventory``): every secret
the plan references, where it is used, a *fingerprint* of its value (HMAC-SHA256 under a
key of this host's state directory, never the value nor a plain hash) and when that value
last changed, each proven against its service by ``secrets_verify`` without changing
anything there or telling anyone. Rotating credentials and evidence are to come here too."""
