"""Telling people: problems the daemon finds, routed to the plan's channels.

Terms:

* a **problem** is something wrong that someone should know: a data class's RPO at
  risk or breached in a location, a location that cannot be read, a job failing run
  after run. It has a stable **key** (``rpo:database:cloud``, ``job:db-full``), so it
  is told once when it opens, repeated only as the plan asks, and **resolved** when
  it is over; PagerDuty's ``dedup_key`` is that key;
* an **event** is one of ``trigger``, ``repeat``, ``resolve`` for one problem;
* a **message** is one event sent to one channel; every message, sent, failed or
  suppressed by the rate limit, is logged in the catalog.
"""
