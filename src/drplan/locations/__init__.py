"""A plan's locations as one system: copying snapshots between replicas, fan-out after
a backup, and the status of every location (reachability, lag, immutability)."""
