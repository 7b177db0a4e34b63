"""etcd, the Kubernetes state: a cluster's snapshot, checked before it is stored.

Terms: a *member* is one etcd server, reached at a client *endpoint*; a *snapshot* is
a consistent copy of a member's key-value store (a bbolt database followed by its
SHA-256) at one *revision*; ``etcdctl`` is the only program drplan runs to talk to a
cluster (``etcdctl.py``), and ``etcd`` itself only to start a scratch member that
proves a restore (``recovery/etcd.py``).
"""
