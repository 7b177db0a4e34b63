"""What the plan's state is, for people and machines: RPO exposure, metrics, status.

Terms:

* the **newest recoverable point** of a data class in a location is the newest time
  it can be restored to from there: the newest snapshot of a job covering the class
  (a base backup's consistent end), or for PostgreSQL the end of the WAL archived
  there without a gap after a base backup;
* its **exposure** is now minus that point: the data lost if the primary went now;
* compared with the class's RPO it is **ok**, **at risk** (past the plan's
  ``objectives.at_risk`` fraction, 80% by default) or **breached**; **unknown** when
  the location cannot be read.
"""
