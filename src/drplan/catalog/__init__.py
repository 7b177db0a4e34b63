"""The catalog: what the daemon did and said, and who may do what next.

Terms:

* a **run** is one attempt at a job (or other scheduled work) for one slot: when it
  started and ended, on which host, how it ended, what it stored, and its error;
* a **notification** is one message to one channel about one problem, sent or not;
* a **lease** lets one daemon of several do a piece of work: it holds the lease until
  it expires, and a daemon that dies loses it when it does.

The catalog is history and cache; the repository is the truth (a lost catalog costs
history, never backups, and ``rebuild`` makes the history the repositories still show
again). SQLite in the state directory by default; a PostgreSQL URL
lets daemons on several hosts share one schedule.
"""
