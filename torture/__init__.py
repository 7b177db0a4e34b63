"""The torture suite: drplan attacked at scale, with figures (docs/reliability.md).

``python -m torture`` (``make torture``) runs trials of every kind and prints, then
writes into docs/reliability.md, a table of what was tried and what broke:

kill -9
    A drplan command (backup, forget --prune, copy, WAL push, restore) killed with its
    whole process group at a random moment, on a local and an S3 location; then the
    repository must check clean, no snapshot or archived segment may be lost, and
    every snapshot must restore exactly what was backed up.
flip
    One bit of one stored object flipped (config, key, index, snapshot, pack, WAL);
    ``check --read-data`` must find it, and no restore or fetch may hand back wrong
    bytes.
fuzz
    Every decoder of repository objects fed random and mutated input for longer than
    ``make test`` does (the same tests, tests/fixtures/fuzz.py).

Every trial draws from its own seed, derived from the run's seed; a failing trial
prints it, and ``python -m torture --only KIND --trial-seed SEED`` runs it again.
``make test`` runs a small sample (tests/torture/). Nothing here imports pytest.

world
    A trial's world: a work directory, an S3 server, repositories, the drplan CLI.
source
    Source trees that change from trial to trial, and their manifests.
kill9, flips
    The trial kinds.
run, report
    Running trials by kind and count; the results as a table.
"""
