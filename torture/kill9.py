"""kill -9 trials: a command killed, with every process it started, at a random moment.

After each kill the repository must check clean (garbage a crash leaves is allowed,
damage is not), no snapshot or archived WAL segment that existed may be gone, and
what the killed command had finished must be whole. At the end of a kind's trials,
every snapshot is restored and compared with the tree it was taken of.

A kill lands anywhere from Python's start-up to the last write; its moment is drawn
between half the time drplan takes to open the repository and a little past the
command's own duration, measured as the trials go.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from torture.source import Manifest, SourceTree, differences, manifest
from torture.world import PASSWORD, Ran, TrialFailed, World

SEGMENT = 16 * 1024 * 1024


class Kind:
    """The trials of one kind in one world, sharing their repository and source."""

    name = ""

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        self.world, self.where, self.rng = world, where, rng
        self.dir = world.root / f"{self.name}-{where}-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir(parents=True)
        self.opening = self._timed(lambda: world.drplan("--version"))
        self.duration = 1.0  # the command's own time, learnt as it completes
        self.label = f"kill -9 {self.name} ({where})"

    def repo(self, name: str) -> str:
        return (
            self.world.s3_repo()
            if self.where == "s3"
            else self.world.local_repo(str(self.dir / name))
        )

    def delay(self, rng: random.Random) -> float:
        return rng.uniform(self.opening * 0.5, self.opening + self.duration * 1.2)

    def learnt(self, started: float, ran: Ran | None) -> None:
        if ran is not None:
            self.duration = 0.7 * self.duration + 0.3 * (time.monotonic() - started - self.opening)

    def trial(self, rng: random.Random) -> bool:
        """One trial; True when the kill came before the command ended. Raises TrialFailed."""
        raise NotImplementedError

    def finish(self) -> None:
        """The invariants over everything the trials left."""

    @staticmethod
    def _timed(fn: Any) -> float:
        started = time.monotonic()
        fn()
        return time.monotonic() - started


class _Snapshots(Kind):
    """Kinds that back a changing tree up into ``self.repo_ref``, tagging each run."""

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        super().__init__(world, where, rng)
        self.source = SourceTree(self.dir / "src", rng)
        self.manifests: dict[str, Manifest] = {}
        self.runs = 0

    def backup(self, repo: str, delay: float | None = None) -> tuple[bool, Ran | None]:
        self.source.change()
        self.runs += 1
        tag = f"run{self.runs}"
        self.manifests[tag] = self.source.manifest()
        args = ["backup", "files", str(self.source.root), "--repo", repo, "--tag", tag]
        if delay is None:
            return False, self.world.drplan(*args).expect(0)
        return self.world.killed_at(delay, *args)

    def ids(self, repo: str) -> dict[str, dict[str, Any]]:
        return {s["id"]: s for s in self.world.snapshots(repo)}

    def restores(self, repo: str, snapshot: dict[str, Any]) -> None:
        """The snapshot restores to exactly the tree it was taken of."""
        target = self.dir / f"restore-{uuid.uuid4().hex[:8]}"
        try:
            self.world.drplan(
                "restore", snapshot["id"], "--target", str(target), "--repo", repo
            ).expect(0)
            tag = snapshot["tags"][0]
            found = manifest(target / self.source.root.relative_to("/"))
            wrong = differences(self.manifests[tag], found)
            if wrong:
                raise TrialFailed(
                    f"snapshot {snapshot['short_id']} ({tag}) restores wrong: {wrong}"
                )
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def all_restore(self, repo: str) -> None:
        self.world.check(repo, read_data=True)
        for snapshot in self.ids(repo).values():
            self.restores(repo, snapshot)


def _no_loss(before: dict[str, Any], after: dict[str, Any], what: str) -> None:
    lost = sorted(before.keys() - after.keys())
    if lost:
        raise TrialFailed(f"{what}: snapshots lost: {[i[:8] for i in lost]}")


class BackupKill(_Snapshots):
    name = "backup"

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        super().__init__(world, where, rng)
        self.repo_ref = self.repo("repo")
        started = time.monotonic()
        self.learnt(started, self.backup(self.repo_ref)[1])

    def trial(self, rng: random.Random) -> bool:
        before = self.ids(self.repo_ref)
        started = time.monotonic()
        killed, ran = self.backup(self.repo_ref, self.delay(rng))
        if ran is not None:
            ran.expect(0)
        self.learnt(started, ran)
        after = self.ids(self.repo_ref)
        _no_loss(before, after, "backup")
        self.world.check(self.repo_ref)
        for new in after.keys() - before.keys():
            self.restores(self.repo_ref, after[new])  # visible means complete
        return killed

    def finish(self) -> None:
        self.all_restore(self.repo_ref)


class PruneKill(_Snapshots):
    """forget --keep-last 3 --prune killed: the snapshots kept must all survive."""

    name = "prune"
    KEEP = 3

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        super().__init__(world, where, rng)
        self.repo_ref = self.repo("repo")
        for _ in range(self.KEEP):
            self.backup(self.repo_ref)

    def trial(self, rng: random.Random) -> bool:
        for _ in range(2):
            self.backup(self.repo_ref)
        before = self.ids(self.repo_ref)
        kept = sorted(before.values(), key=lambda s: s["time"])[-self.KEEP :]
        started = time.monotonic()
        args = ["forget", "--keep-last", str(self.KEEP), "--prune", "--repo", self.repo_ref]
        killed, ran = self.world.killed_at(self.delay(rng), *args)
        if ran is not None:
            ran.expect(0)
        self.learnt(started, ran)
        after = self.ids(self.repo_ref)
        _no_loss({s["id"]: s for s in kept}, after, "forget --prune (a kept snapshot)")
        if set(after) - set(before):
            raise TrialFailed("forget --prune made snapshots appear")
        self.world.check(self.repo_ref)
        self.restores(self.repo_ref, kept[-1])
        return killed

    def finish(self) -> None:
        self.all_restore(self.repo_ref)


class CopyKill(_Snapshots):
    """copy from a local repository to a replica (local or S3) killed."""

    name = "copy"

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        super().__init__(world, where, rng)
        self.origin = world.local_repo(str(self.dir / "origin"))
        self.backup(self.origin)
        self.replica = world.s3_empty() if where == "s3" else str(self.dir / "replica")
        started = time.monotonic()
        ran = world.drplan("copy", "--from", self.origin, "--to", self.replica).expect(0)
        self.learnt(started, ran)

    def trial(self, rng: random.Random) -> bool:
        self.backup(self.origin)
        before = self.ids(self.replica)
        started = time.monotonic()
        args = ["copy", "--from", self.origin, "--to", self.replica]
        killed, ran = self.world.killed_at(self.delay(rng), *args)
        if ran is not None:
            ran.expect(0)
        self.learnt(started, ran)
        after = self.ids(self.replica)
        _no_loss(before, after, "copy")
        if not set(after) <= set(self.ids(self.origin)):
            raise TrialFailed("the replica holds snapshots its origin does not")
        self.world.check(self.replica)
        for new in after.keys() - before.keys():
            self.restores(self.replica, after[new])
        return killed

    def finish(self) -> None:
        self.world.drplan("copy", "--from", self.origin, "--to", self.replica).expect(0)
        self.all_restore(self.replica)


class RestoreKill(_Snapshots):
    """restore killed, then run again into the same target: it resumes, and is exact."""

    name = "restore"

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        super().__init__(world, where, rng)
        self.repo_ref = self.repo("repo")
        for _ in range(3):
            self.source.change()
        self.backup(self.repo_ref)
        self.snapshot = next(iter(self.ids(self.repo_ref).values()))
        target = self.dir / "first"
        started = time.monotonic()
        ran = world.drplan("restore", "latest", "--target", str(target), "--repo", self.repo_ref)
        self.learnt(started, ran.expect(0))
        shutil.rmtree(target)

    def trial(self, rng: random.Random) -> bool:
        target = self.dir / "target"
        if rng.random() < 0.5:
            shutil.rmtree(target, ignore_errors=True)  # else: resume what the last one left
        args = ["restore", "latest", "--target", str(target), "--repo", self.repo_ref]
        started = time.monotonic()
        killed, ran = self.world.killed_at(self.delay(rng), *args)
        if ran is not None:
            ran.expect(0)
        self.learnt(started, ran)
        self.world.drplan(*args).expect(0)
        found = manifest(target / self.source.root.relative_to("/"))
        wrong = differences(self.manifests[self.snapshot["tags"][0]], found)
        if wrong:
            raise TrialFailed(f"a resumed restore is wrong: {wrong}")
        outside = {p.name for p in target.iterdir()} - {self.source.root.parts[1]}
        if outside:
            raise TrialFailed(f"the restore wrote outside its tree: {sorted(outside)}")
        return killed

    def finish(self) -> None:
        self.world.check(self.repo_ref, read_data=True)


class WalPushKill(Kind):
    """wal push killed, with its WAL agent: what it answered archived must be in every
    location, byte for byte, and a push again must succeed (PostgreSQL retries)."""

    name = "wal push"

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        super().__init__(world, where, rng)
        self.repos = [world.local_repo(str(self.dir / "local"))]
        if where == "s3":
            self.repos.append(world.s3_replica_of(self.repos[0]))
        locations = {f"l{i}": _location(ref) for i, ref in enumerate(self.repos)}
        self.plan = self.dir / "plan.yaml"
        self.plan.write_text(yaml.safe_dump(_wal_plan(locations)))
        self.password = self.dir / "password"
        self.password.write_text(PASSWORD + "\n")
        self.pg_wal = self.dir / "data" / "pg_wal"
        (self.pg_wal / "archive_status").mkdir(parents=True)
        self.archived: dict[str, bytes] = {}
        self.number = 0
        started = time.monotonic()
        self.learnt(started, self.push(self.segment(rng)).expect(0))
        self.archived[self.last.name] = self.last.read_bytes()

    def segment(self, rng: random.Random) -> Path:
        self.number += 1
        path = self.pg_wal / f"00000001{self.number >> 8:08X}{self.number & 0xFF:08X}"
        fill = rng.randbytes(rng.randint(8, 4096))
        path.write_bytes((fill * (SEGMENT // len(fill) + 1))[:SEGMENT])
        self.last = path
        return path

    def args(self, *more: str) -> list[str]:
        return [
            "--plan",
            str(self.plan),
            "wal",
            more[0],
            "--password-file",
            str(self.password),
            *more[1:],
        ]

    def push(self, path: Path) -> Ran:
        return self.world.drplan(*self.args("push", str(path)))

    def fetched(self, name: str, repo_name: str) -> bytes:
        out = self.dir / f"fetched-{uuid.uuid4().hex[:8]}"
        try:
            self.world.drplan(*self.args("fetch", "--repo", repo_name, name, str(out))).expect(0)
            return out.read_bytes()
        finally:
            out.unlink(missing_ok=True)

    def everywhere(self, name: str, expected: bytes) -> None:
        for i in range(len(self.repos)):
            if self.fetched(name, f"l{i}") != expected:
                raise TrialFailed(f"WAL {name} fetched from l{i} differs from what was archived")

    def trial(self, rng: random.Random) -> bool:
        path = self.segment(rng)
        data = path.read_bytes()
        started = time.monotonic()
        killed, ran = self.world.killed_at(self.delay(rng), *self.args("push", str(path)))
        self._kill_agent()
        self.learnt(started, ran)
        if ran is not None and ran.code == 0:
            self.everywhere(path.name, data)  # answered archived: it must be, everywhere
        self.push(path).expect(0)  # what PostgreSQL does next
        self.everywhere(path.name, data)
        self.archived[path.name] = data
        earlier = rng.choice(sorted(self.archived))
        self.everywhere(earlier, self.archived[earlier])
        path.unlink()  # as PostgreSQL recycles it
        return killed

    def _kill_agent(self) -> None:
        """A crash takes the agent too: it runs in a session of its own."""
        pid_file = self.pg_wal / "drplan-archive" / "agent.pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def finish(self) -> None:
        for name, data in self.archived.items():
            self.everywhere(name, data)


def _location(ref: str) -> dict[str, Any]:
    if ref.startswith("s3://"):
        bucket, _, prefix = ref.removeprefix("s3://").partition("/")
        return {"role": "cloud", "kind": "s3", "bucket": bucket, "prefix": prefix}
    return {"role": "primary", "kind": "local", "path": ref}


def _wal_plan(locations: dict[str, Any]) -> dict[str, Any]:
    from testbed.plans import clean_plan  # noqa: PLC0415

    plan = clean_plan()
    plan["locations"] = locations
    names = list(locations)
    plan["data_classes"]["database"]["locations"] = names
    for job in plan["jobs"].values():
        job["locations"] = names
    return plan


KINDS: dict[str, type[Kind]] = {
    kind.name: kind for kind in (BackupKill, PruneKill, CopyKill, RestoreKill, WalPushKill)
}
