"""Command backups: what a system's ``command`` writes on standard output (an etcd
snapshot, ``kubectl get -o yaml``, a release export), stored as one file of a snapshot.

The output is cut with the content-defined chunker as it arrives (so a dump that
changes a little stores a little) and never held whole in memory. The snapshot is
saved only when the command exits 0: a dump cut short by a failure must not look like
a backup. The command runs with ``/bin/sh -c`` in this process's group, so stopping the
backup (a timeout in ``drplan serve``) stops it too. Its standard error is passed on,
and its last line names the failure.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from typing import BinaryIO, cast

from drplan.errors import SourceError
from drplan.repo.blob_pool import BlobPool
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.stored import Run, TreeBuilder, store_stream

OUTPUT_SUFFIX = ".out"  # the file's name in the snapshot: SYSTEM.out


class CommandBackupError(SourceError):
    """The command failed or could not be started; nothing was saved."""


def output_name(system: str) -> str:
    return system + OUTPUT_SUFFIX


def command_backup(
    repo: Repository,
    *,
    command: str,
    system: str,
    job: str | None,
    tags: list[str],
    host: str | None = None,
) -> Snapshot:
    """Run ``command`` and store its standard output in ``repo`` (locked by the caller)."""
    run = Run(repo)
    with tempfile.TemporaryFile() as err, BlobPool(repo, DATA) as pool:
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=err,
            )  # fmt: skip
        except OSError as exc:
            raise CommandBackupError(
                f"system {system}: cannot run /bin/sh: {exc.strerror}"
            ) from None
        assert proc.stdout is not None
        try:
            with proc.stdout:
                stored = store_stream(repo, pool, cast(BinaryIO, proc.stdout))
        except BaseException:
            proc.kill()  # the backup cannot finish (the repository failed, Ctrl-C)
            proc.wait()
            raise
        code = proc.wait()
        err.seek(0)
        lines = [ln.rstrip() for ln in err.read().decode("utf-8", "replace").splitlines()]
        lines = [ln for ln in lines if ln.strip()]
        if code != 0:
            last = lines[-1].strip() if lines else "no message"
            raise CommandBackupError(
                f"system {system}: its command exited with code {code}: {last}",
                hint="run the system's `command` by hand to see why; nothing was saved",
            )
        for line in lines:
            print(f"{system}: {line}", file=sys.stderr)
    tree = TreeBuilder()
    tree.add(output_name(system), stored)
    source = {"kind": "command", "output": output_name(system), "size": stored.size}
    return run.save(tree, system=system, job=job, tags=tags, source=source,
                    bytes_read=stored.size, files_new=1, host=host)  # fmt: skip
