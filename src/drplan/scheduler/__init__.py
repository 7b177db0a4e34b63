"""The daemon's sense of time: which runs are due, and how failed runs are retried.

Terms:

* a **slot** is a time a job's schedule names (a cron match, a multiple of an
  interval); each run is *for* one slot;
* a job is **due** when the newest slot at or before now is later than the slot of
  its last run; after downtime several slots may have passed, and the job runs once,
  for the newest (the others are counted as *missed*, not run);
* a run **overruns** when it has not ended by the job's next slot: the job is never
  started twice at once, and the overrun is reported;
* a failed run is **retried** after a delay that doubles each attempt, with full
  jitter, until the next slot makes a new run due.
"""
