"""Bit flips: one bit of one stored object changed, as a disk or a hostile store might.

The repository holds every kind of object: its config, two key files, indexes,
snapshots, packs of data and of directory listings, and archived WAL. A trial flips
one bit of one object of a kind drawn in turn, then:

- ``check --read-data`` must find it (exit 13; a key or config that no longer
  opens may also be a wrong password, exit 12);
- a restore of the newest snapshot must be exact or refuse (exit 13), and a fetch
  of a flipped WAL file must refuse (exit 255): never wrong bytes handed back;

and the bit is set back for the next trial.
"""

from __future__ import annotations

import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import yaml

from torture.kill9 import SEGMENT, _location, _wal_plan
from torture.source import Manifest, SourceTree, differences, manifest
from torture.world import PASSWORD, TrialFailed, World

WAL_FETCH_DAMAGED = 255


class Flips:
    name = "flip"
    label = "bit flip"

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        self.world, self.rng = world, rng
        self.dir = world.root / f"flips-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir(parents=True)
        self.repo = world.local_repo(str(self.dir / "repo"))
        self.source = SourceTree(self.dir / "src", rng)
        self.manifests: dict[str, Manifest] = {}  # by snapshot id
        for _ in range(3):
            self.source.change()
            ran = world.drplan(
                "backup", "files", str(self.source.root), "--repo", self.repo, "--json"
            ).expect(0)
            self.manifests[ran.json()["snapshot"]] = self.source.manifest()
        self.newest = ran.json()["snapshot"]
        self.password = self.dir / "password"
        self.password.write_text(PASSWORD + "\n")
        world.drplan(
            "key", "add", "--repo", self.repo, "--new-password-file", str(self.password)
        ).expect(0)
        self.plan = self.dir / "plan.yaml"
        self.plan.write_text(yaml.safe_dump(_wal_plan({"l0": _location(self.repo)})))
        self.wal: dict[str, bytes] = {}
        pg_wal = self.dir / "pg_wal"
        pg_wal.mkdir()
        for number in (1, 2):
            segment = pg_wal / f"0000000100000000{number:08X}"
            segment.write_bytes(rng.randbytes(4096) * (SEGMENT // 4096))
            self.wal[segment.name] = segment.read_bytes()
            world.drplan(*self._wal("push", str(segment))).expect(0)
        self.turn = 0

    def _wal(self, *args: str) -> list[str]:
        return [
            "--plan",
            str(self.plan),
            "wal",
            args[0],
            "--password-file",
            str(self.password),
            *args[1:],
        ]

    def objects(self) -> dict[str, list[Path]]:
        root = Path(self.repo)
        kinds = {
            "config": [root / "config"],
            "key": sorted((root / "keys").iterdir()),
            "index": sorted((root / "index").iterdir()),
            "snapshot": sorted((root / "snapshots").iterdir()),
            "pack": sorted(p for p in (root / "data").rglob("*") if p.is_file()),
            "wal": sorted(p for p in (root / "wal").rglob("*") if p.is_file()),
        }
        return {kind: paths for kind, paths in kinds.items() if paths}

    def trial(self, rng: random.Random) -> bool:
        objects = self.objects()
        kind = sorted(objects)[self.turn % len(objects)]
        self.turn += 1
        victim = rng.choice(objects[kind])
        original = victim.read_bytes()
        flipped = bytearray(original)
        at = rng.randrange(len(flipped))
        flipped[at] ^= 1 << rng.randrange(8)
        victim.write_bytes(bytes(flipped))
        where = f"{kind} {victim.relative_to(self.repo)} byte {at}"
        try:
            self._judge(kind, victim, where)
        finally:
            victim.write_bytes(original)
        return True

    def _judge(self, kind: str, victim: Path, where: str) -> None:
        check = self.world.drplan("check", "--read-data", "--repo", self.repo)
        allowed = (12, 13) if kind in ("key", "config") else (13,)
        if check.code == 0:
            raise TrialFailed(f"undetected flip: check --read-data passed with a flip in {where}")
        if check.code not in allowed:
            raise TrialFailed(
                f"flip in {where}: check exited {check.code}: {check.err.strip()[-300:]}"
            )
        self._no_wrong_restore(where)
        if kind == "wal":
            name = victim.name.split(".")[0]
            out = self.dir / f"fetched-{uuid.uuid4().hex[:8]}"
            fetched = self.world.drplan(*self._wal("fetch", name, str(out)))
            if fetched.code == 0 and out.read_bytes() != self.wal[name]:
                raise TrialFailed(f"flip in {where}: wal fetch handed back different bytes")
            if fetched.code not in (0, WAL_FETCH_DAMAGED):
                raise TrialFailed(f"flip in {where}: wal fetch exited {fetched.code}")
            out.unlink(missing_ok=True)

    def _no_wrong_restore(self, where: str) -> None:
        target = self.dir / f"restore-{uuid.uuid4().hex[:8]}"
        try:
            ran = self.world.drplan(
                "restore", "latest", "--target", str(target), "--repo", self.repo, "--json"
            )
            if ran.code == 0:
                restored, told = ran.json()["snapshot"], ran.json()["unreadable_snapshots"]
                if restored != self.newest and not told:
                    raise TrialFailed(
                        f"flip in {where}: latest restored an older snapshot without saying so"
                    )
                found = manifest(target / self.source.root.relative_to("/"))
                wrong = differences(self.manifests[restored], found)
                if wrong:
                    raise TrialFailed(f"flip in {where}: restore exited 0 with wrong data: {wrong}")
            elif ran.code not in (12, 13):
                raise TrialFailed(
                    f"flip in {where}: restore exited {ran.code}: {ran.err.strip()[-300:]}"
                )
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def finish(self) -> None:
        self.world.check(self.repo, read_data=True)


def kinds_of(flips: Flips) -> dict[str, Any]:
    """Which kinds of object the trials flipped (for the report)."""
    return {kind: len(paths) for kind, paths in flips.objects().items()}
