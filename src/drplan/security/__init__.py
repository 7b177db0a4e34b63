"""Security: the audit trail of every change made through the web server and the API
(``audit``), and the last clean point (``scan``): each snapshot of a files system judged
``clean``, ``suspicious`` or ``compromised`` from the signs ransomware leaves (files
renamed to NAME.EXT, content that now looks encrypted, ransom notes), each signal held
against the system's own history (``scan_signals``) on what changed since the snapshot
before (``scan_changes``). Key rotation and evidence are to come here too."""
