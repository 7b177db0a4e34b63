"""`drplan scan` and `drplan restore last-clean` through the CLI, on real files and a real
repository: a ransomware attack found and rolled back, a busy log directory left alone,
a lone snapshot judged on names, a damaged snapshot reported unknown."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drplan.repo.repository import pack_name
from tests.conftest import Result
from tests.integration.conftest import files_job_plan, open_repo
from tests.integration.test_locations import FAST_KDF

Run = Callable[..., Result]
COMPROMISED_EXIT = 25


class System:
    """The plan's files system `web`, backing up ``source`` to a local location."""

    def __init__(self, run: Run, tmp_path: Path, source: Path) -> None:
        self.run, self.source = run, source
        self.location = tmp_path / "primary"
        location = {"role": "primary", "kind": "local", "path": str(self.location)}
        self.plan = str(files_job_plan(tmp_path, source, {"primary": location}))
        assert run("--plan", self.plan, "repo", "init", "primary", *FAST_KDF).code == 0

    def cli(self, *args: str) -> Result:
        return self.run("--plan", self.plan, *args)

    def backup(self) -> None:
        done = self.cli("backup", "web", "--json")
        assert done.code == 0, done.err

    def snapshot_ids(self) -> list[str]:
        return [
            s["id"] for s in json.loads(self.cli("snapshots", "--repo", "primary", "--json").out)
        ]

    def scan(self, *extra: str) -> tuple[int, dict[str, Any]]:
        done = self.cli("scan", "web", "--json", *extra)
        assert done.code in (0, COMPROMISED_EXIT), done.err
        return done.code, json.loads(done.out)


def words(rng: random.Random, size: int) -> bytes:
    vocabulary = ["invoice", "total", "customer", "report", "quarter", "the", "and", "of", "net"]
    text = " ".join(rng.choice(vocabulary) for _ in range(size // 5))
    return text.encode()[:size]


def csv_rows(rng: random.Random, size: int) -> bytes:
    rows = [
        f"{i},{rng.randint(1, 9999)},{rng.choice(['EUR', 'USD'])},ok" for i in range(size // 12)
    ]
    return ("id,amount,currency,state\n" + "\n".join(rows)).encode()[:size]


def office_files(root: Path, rng: random.Random) -> None:
    """About 200 files of mixed kinds: text, CSV, and already-compressed .gz and .png."""
    for folder in ("docs", "finance", "media"):
        (root / folder).mkdir(parents=True)
    for i in range(110):
        (root / "docs" / f"note-{i}.txt").write_bytes(words(rng, rng.randint(1024, 12_000)))
    for i in range(70):
        (root / "finance" / f"ledger-{i}.csv").write_bytes(csv_rows(rng, rng.randint(1024, 9000)))
    for i in range(10):
        (root / "media" / f"archive-{i}.gz").write_bytes(gzip.compress(rng.randbytes(8000)))
        (root / "media" / f"photo-{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.randbytes(9000))
    (root / "app.log").write_bytes(b"")


def ordinary_day(root: Path, rng: random.Random, day: int) -> None:
    """A few files edited, two added, the log appended."""
    for path in rng.sample(sorted((root / "docs").iterdir()), 3):
        path.write_bytes(path.read_bytes() + b" amended " + words(rng, 300))
    (root / "docs" / f"minutes-{day}.txt").write_bytes(words(rng, 4000))
    (root / "finance" / f"export-{day}.csv").write_bytes(csv_rows(rng, 3000))
    with (root / "app.log").open("ab") as log:
        log.write(b"".join(f"day {day} line {n} status=ok\n".encode() for n in range(200)))


def encrypt(paths: list[Path], rng: random.Random) -> None:
    """What ransomware does to each: its bytes replaced by ciphertext of the same size
    (random bytes are indistinguishable from it), then renamed NAME.locked."""
    for path in paths:
        path.write_bytes(rng.randbytes(path.stat().st_size))
        path.rename(path.with_name(path.name + ".locked"))


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_ransomware_is_found_and_the_last_clean_point_restored_bit_exact(
    run: Run, tmp_path: Path, password: str
) -> None:
    rng = random.Random(7)
    data = tmp_path / "data"
    office_files(data, rng)
    system = System(run, tmp_path, data)
    system.backup()
    for day in (1, 2, 3):
        ordinary_day(data, rng, day)
        system.backup()
    before_attack = tmp_path / "before-attack"
    shutil.copytree(data, before_attack)

    victims = [p for p in sorted(data.rglob("*")) if p.is_file() and p.name != "app.log"]
    encrypt(rng.sample(victims, int(0.4 * len(victims))), rng)
    (data / "README_TO_DECRYPT.txt").write_text("Your files are encrypted. Pay 2 BTC to ...\n")
    system.backup()
    untouched = [p for p in sorted(data.rglob("*")) if p.is_file() and p.suffix in (".txt", ".csv")]
    encrypt(rng.sample(untouched, 5), rng)  # the attacker comes back for a few more
    system.backup()

    ids = system.snapshot_ids()
    code, report = system.scan()
    verdicts = [s["verdict"] for s in report["snapshots"]]
    assert verdicts == ["clean"] * 4 + ["compromised"] * 2, report
    assert code == COMPROMISED_EXIT  # the newest is compromised: cron and the daemon alert
    attack = report["snapshots"][4]
    assert attack["signals"]["encrypted"]["value"] >= 0.35
    assert attack["signals"]["encrypted"]["z"] >= 4
    assert attack["signals"]["notes"]["examples"][0].endswith("/README_TO_DECRYPT.txt")
    assert all(p.endswith(".locked") for p in attack["signals"]["renamed"]["examples"])
    assert len(attack["signals"]["renamed"]["examples"]) == 10
    # The last one changed little since the attack, but its files are still encrypted.
    assert report["snapshots"][5]["against_last_clean"]["snapshot"] == ids[3]
    assert report["last_clean"] == ids[3]

    text = system.cli("scan", "web")
    assert text.code == COMPROMISED_EXIT
    assert text.out.splitlines()[-1].startswith(f"last clean point: {ids[3][:8]}")
    assert f"the newest snapshot of web, {ids[5][:8]}, is compromised" in text.err

    target = tmp_path / "restored"
    restored = system.cli("restore", "last-clean", "--system", "web", "--target", str(target))
    assert restored.code == 0, restored.err
    assert f"last clean point of web: {ids[3][:8]}" in restored.err
    assert files_of(target / data.relative_to("/")) == files_of(before_attack)


def test_a_busy_log_directory_is_not_flagged(run: Run, tmp_path: Path, password: str) -> None:
    """Every file rewritten at every backup, compressed logs high in entropy, a rotated one
    added each time: its own history says this is normal."""
    rng = random.Random(11)
    logs = tmp_path / "logs"
    logs.mkdir()
    system = System(run, tmp_path, logs)
    for backup in range(6):
        for i in range(12):
            lines = (f"{backup}:{n} GET /api/{rng.randint(1, 999)} 200\n" for n in range(300))
            (logs / f"service-{i}.log").write_text("".join(lines))
        for i in range(6):
            (logs / f"service-{i}.log.1.gz").write_bytes(gzip.compress(rng.randbytes(6000)))
        (logs / f"rotated-{backup}.gz").write_bytes(gzip.compress(rng.randbytes(6000)))
        system.backup()
    code, report = system.scan()
    assert [s["verdict"] for s in report["snapshots"]] == ["clean"] * 6, report
    assert code == 0
    newest = report["snapshots"][-1]
    assert newest["signals"]["rewritten"]["value"] > 0.7  # all but the rotated, as every time
    assert newest["signals"]["rewritten"]["z"] is not None
    assert newest["signals"]["rewritten"]["z"] < 3
    assert newest["signals"]["encrypted"]["count"] == 0
    assert report["last_clean"] == system.snapshot_ids()[-1]


def test_a_lone_snapshot_is_judged_on_names_and_says_it_had_no_history(
    run: Run, tmp_path: Path, password: str
) -> None:
    data = tmp_path / "data"
    office_files(data, random.Random(3))
    system = System(run, tmp_path, data)
    system.backup()
    code, report = system.scan()
    (only,) = report["snapshots"]
    assert (code, only["verdict"], only["no_history"], only["compared_with"]) == (
        0, "clean", True, None
    )  # fmt: skip
    assert "nothing before it to compare with (no history)" in system.cli("scan", "web").out

    # The same system, found after the fact with the attack already in its only snapshot.
    encrypt(sorted((data / "docs").iterdir())[:60], random.Random(4))
    (data / "HOW_TO_RECOVER_FILES.txt").write_text("pay up\n")
    shutil.rmtree(system.location)
    assert system.cli("repo", "init", "primary", *FAST_KDF).code == 0
    system.backup()
    code, report = system.scan()
    (only,) = report["snapshots"]
    assert (code, only["verdict"]) == (COMPROMISED_EXIT, "compromised"), only
    assert report["last_clean"] is None
    none = system.cli("restore", "last-clean", "--system", "web", "--target", str(tmp_path / "x"))
    assert none.code == 1
    assert none.err.startswith("drplan: no clean snapshot of web to restore")
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_a_snapshot_that_cannot_be_read_is_unknown_and_the_others_are_judged(
    run: Run, tmp_path: Path, password: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rng = random.Random(5)
    for i in range(30):
        (data / f"file-{i}.txt").write_bytes(words(rng, 2000))
    system = System(run, tmp_path, data)
    for backup in range(4):
        (data / f"file-{backup}.txt").write_bytes(words(rng, 2500))
        system.backup()
    ids = system.snapshot_ids()
    repo = open_repo(str(system.location))
    second = next(s for s in repo.snapshots() if s.id == ids[1])
    where = repo.index.lookup(second.tree)
    assert where is not None
    os.remove(system.location / pack_name(where.pack.id))  # the second snapshot's trees

    scanned = system.cli("scan", "web", "--json")
    assert scanned.code == 0, scanned.err  # the newest is clean: unknowns are listed, not fatal
    report = json.loads(scanned.out)
    verdicts = {s["id"]: s for s in report["snapshots"]}
    assert [verdicts[i]["verdict"] for i in ids] == ["clean", "unknown", "clean", "clean"]
    assert "cannot be read: pack" in verdicts[ids[1]]["reasons"][0]
    assert verdicts[ids[2]]["compared_with"] == ids[0]  # past the unreadable one
    assert f"1 snapshot(s) could not be read and are unknown ({ids[1][:8]})" in scanned.err
