"""`drplan scan --scanner` and `--yara` through the CLI, on real files and a real repository:
a scanner (a shell script that follows clamscan's conventions) over restored snapshots,
walking the last clean point back; one that fails; YARA rules over what each snapshot
brought, a match followed while the file stays; and snapshots that cannot be read, the
only one of a system among them."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from drplan.catalog.paths import state_dir
from drplan.repo.repository import pack_name
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from tests.integration.conftest import open_repo
from tests.integration.test_scan import COMPROMISED_EXIT, Run, System, office_files, ordinary_day

MARKER = "DRPLAN-TEST-MALWARE-7f3c"  # what the test's scanner looks for, like a signature
# A scanner with clamscan's conventions: `PATH: SIGNATURE FOUND` per infected file on
# standard output, exit 1 when it found something, 0 when not, 2 on an error.
CLAMSCAN_LIKE = f"""#!/bin/sh
dir=$1
[ -d "$dir" ] || {{ echo "ERROR: Can't access file $dir" >&2; exit 2; }}
found=$(grep -rl -- '{MARKER}' "$dir")
[ -z "$found" ] && exit 0
for f in $found; do echo "$f: Drplan.Test.Marker FOUND"; done
exit 1
"""
BROKEN = """#!/bin/sh
echo "LibClamAV Error: cli_loaddbdir(): No supported database files found in /var/lib/clamav" >&2
exit 2
"""
RANSOM_RULE = """
rule ransom_note_text : ransomware {
    meta:
        description = "the text of a ransom note, whatever the file is called"
    strings:
        $a = "your files have been encrypted" nocase
        $b = /send [0-9.]+ BTC to/ nocase
    condition:
        all of them
}
"""
NOTE = b"Hello. Your files have been encrypted.\nSend 0.5 BTC to bc1qexample and mail us.\n"


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    path.chmod(0o755)
    return str(path)


def office(run: Run, root: Path, seed: int) -> tuple[System, Path, random.Random]:
    """An office share under ``root``/data, the plan's system `web`, backed up once."""
    rng = random.Random(seed)
    data = root / "data"
    office_files(data, rng)
    system = System(run, root, data)
    system.backup()
    return system, data, rng


def history(tmp_path: Path, run: Run) -> tuple[System, Path, list[str]]:
    """Four ordinary backups of an office share; a dropper carrying the marker arrives
    with the third and stays: nothing the heuristics see (one small file added)."""
    system, data, rng = office(run, tmp_path, 21)
    for day in (1, 2, 3):
        ordinary_day(data, rng, day)
        if day == 2:
            (data / "docs" / "invoice-tool.js").write_text(f"var k = '{MARKER}';\n" * 40)
        system.backup()
    return system, data, system.snapshot_ids()


def scan(system: System, *args: str) -> tuple[int, dict[str, Any], str]:
    done = system.cli("scan", "web", "--json", *args)
    assert "Traceback" not in done.err, done.err
    assert "internal error" not in done.err, done.err
    return done.code, json.loads(done.out), done.err


def test_the_scanner_finds_what_the_heuristics_cannot_and_walks_the_clean_point_back(
    run: Run, tmp_path: Path, password: str
) -> None:
    system, data, ids = history(tmp_path, run)
    clam = script(tmp_path, "clamscan-like", CLAMSCAN_LIKE)
    code, plain, _ = scan(system)
    assert [s["verdict"] for s in plain["snapshots"]] == ["clean"] * 4
    assert plain["last_clean"] == ids[3]

    code, report, err = scan(system, "--scanner", f"{clam} {{dir}}")
    snapshots = report["snapshots"]
    assert [s["verdict"] for s in snapshots] == ["clean", "clean", "compromised", "compromised"]
    assert code == COMPROMISED_EXIT
    # The newest, then the last clean point while the scanner kept finding: never the first.
    assert [s["scanner"] and s["scanner"]["outcome"] for s in snapshots] == [
        None, "clean", "found", "found"
    ]  # fmt: skip
    assert report["last_clean"] == ids[1]
    evidence = snapshots[3]["scanner"]
    assert evidence["exit_code"] == 1
    # The paths are the system's own, not the scratch directory's.
    assert evidence["lines"] == [f"{data}/docs/invoice-tool.js: Drplan.Test.Marker FOUND"]
    assert snapshots[2]["reasons"][0].startswith("the scanner found something (exit 1):")
    assert "scanner: restoring" in err
    scratch = Path(state_dir()) / "scan"
    assert scratch.is_dir()
    assert not any(scratch.iterdir())  # each restore removed

    text = system.cli("scan", "web", "--scanner", f"{clam} {{dir}}")
    assert text.code == COMPROMISED_EXIT
    assert f"  {data}/docs/invoice-tool.js: Drplan.Test.Marker FOUND" in text.out
    assert text.out.splitlines()[-1].startswith(f"last clean point: {ids[1][:8]}")
    assert "drplan restore ID --target DIR" in text.err  # restore last-clean has no scanner

    every = tmp_path / "elsewhere"
    code, report, _ = scan(system, "--scanner", clam, "--scanner-all", "--scratch", str(every))
    assert [s["scanner"]["outcome"] for s in report["snapshots"]] == [
        "clean", "clean", "found", "found"
    ]  # fmt: skip
    assert not any((every / "drplan-scan").iterdir())


def test_a_generic_scanner_says_found_with_any_status_it_is_told(
    run: Run, tmp_path: Path, password: str
) -> None:
    system, _, ids = history(tmp_path, run)
    # Exit 3 on a finding: an error by clamscan's convention, a finding by the generic one.
    body = CLAMSCAN_LIKE.replace("exit 1\n", "exit 3\n")
    tool = script(tmp_path, "generic", body)
    code, report, _ = scan(system, "--scanner", tool, "--scanner-found", "nonzero")
    assert (code, report["snapshots"][-1]["verdict"]) == (COMPROMISED_EXIT, "compromised")
    code, report, err = scan(system, "--scanner", tool, "--scanner-found", "3,4")
    assert code == COMPROMISED_EXIT
    code, report, err = scan(system, "--scanner", tool)
    assert code == 1
    assert report["snapshots"][-1]["verdict"] == "unknown"
    assert err.splitlines()[-1].startswith(
        f"drplan: the scanner could not judge 1 snapshot(s) of web ({ids[3][:8]};"
    )


def test_a_scanner_that_fails_leaves_the_snapshot_unknown_and_exits_1(
    run: Run, tmp_path: Path, password: str
) -> None:
    system, _, ids = history(tmp_path, run)
    broken = script(tmp_path, "broken", BROKEN)
    code, report, err = scan(system, "--scanner", broken)
    assert code == 1
    verdicts = [s["verdict"] for s in report["snapshots"]]
    assert verdicts == ["clean", "clean", "clean", "unknown"]  # the walk back stopped
    newest = report["snapshots"][-1]
    assert newest["scanner"]["error"] == (
        "exit 2: LibClamAV Error: cli_loaddbdir(): No supported database files found in"
        " /var/lib/clamav"
    )
    assert report["last_clean"] == ids[2]  # never one the scanner could not judge
    assert "drplan: the scanner could not judge 1 snapshot(s) of web" in err
    assert not any((Path(state_dir()) / "scan").iterdir())


def test_a_snapshot_whose_data_cannot_be_restored_is_not_called_clean_by_the_scanner(
    run: Run, tmp_path: Path, password: str
) -> None:
    """The heuristics read only the first chunk of what changed; the scanner's restore
    reads everything, and a damaged blob of an old, unchanged file stops it."""
    system, data, ids = history(tmp_path, run)
    photo = _file(system.location, ids[3], data / "media" / "photo-3.png")  # never changed
    _damage(system.location, photo.content[0])

    clam = script(tmp_path, "clamscan-like", CLAMSCAN_LIKE.replace(MARKER, "NOT-THERE"))
    code, report, err = scan(system, "--scanner", clam)
    assert code == 1, err
    newest_report = report["snapshots"][-1]
    assert newest_report["verdict"] == "unknown"
    assert "could not be restored" in newest_report["scanner"]["error"]
    assert not any((Path(state_dir()) / "scan").iterdir())


def test_yara_matches_what_a_snapshot_brought_and_follows_it_while_it_stays(
    run: Run, tmp_path: Path, password: str
) -> None:
    system, data, rng = office(run, tmp_path, 8)
    ordinary_day(data, rng, 1)
    system.backup()
    # A note under an ordinary name: no ransom-note pattern sees it, the rule reads it.
    (data / "finance" / "info.txt").write_bytes(NOTE * 20)
    system.backup()
    ordinary_day(data, rng, 2)
    system.backup()
    (data / "finance" / "info.txt").unlink()
    system.backup()
    ids = system.snapshot_ids()
    rules = tmp_path / "ransom.yar"
    rules.write_text(RANSOM_RULE)

    code, report, _ = scan(system, "--yara", str(rules))
    snapshots = report["snapshots"]
    assert [s["verdict"] for s in snapshots] == [
        "clean", "clean", "compromised", "compromised", "clean"
    ]  # fmt: skip
    assert code == 0  # the newest no longer holds it: the last clean point is before it
    assert report["last_clean"] == ids[1]
    first, found, carried = snapshots[0]["yara"], snapshots[2]["yara"], snapshots[3]["yara"]
    assert first["files"] == 201  # nothing before it: every file read
    assert found["files"] == 1
    assert found["matches"] == [{"path": f"{data}/finance/info.txt", "rules": ["ransom_note_text"],
                                 "found_in": ids[2][:8], "suspicious_only": False}]  # fmt: skip
    assert carried["match_count"] == 0
    assert carried["carried"][0]["found_in"] == ids[2][:8]
    assert snapshots[3]["reasons"][0].startswith("still holds 1 file(s) YARA matched earlier")
    assert snapshots[4]["yara"]["carried_count"] == 0

    bad = tmp_path / "bad.yar"
    bad.write_text("rule x { condition: nope }")
    refused = system.cli("scan", "web", "--yara", str(bad))
    assert refused.code == 2
    assert refused.err.startswith(f'drplan: --yara: {bad}(1): undefined identifier "nope"')


def test_usage_errors_are_one_line_exit_2(run: Run, tmp_path: Path, password: str) -> None:
    system, data, _ = office(run, tmp_path, 1)
    for args, said in [
        (("--scanner-all",), "--scanner-all: only with --scanner"),
        (("--scanner", "no-such-scanner"), "--scanner: no-such-scanner is not a command"),
        (("--scanner", "sh", "--scanner-found", "0"), "--scanner-found '0'"),
        (("--scanner", "sh", "--scanner-timeout", "soon"), "--scanner-timeout"),
        (("--scanner", "sh", "--scratch", str(data / "tmp")), "the scanner's scratch directory"),
    ]:
        done = system.cli("scan", "web", *args)
        assert done.code == 2, (args, done.err)
        assert done.err.startswith(f"drplan: {said}"), done.err
        assert "Traceback" not in done.err
    assert not (data / "tmp").exists()


def test_a_damaged_pack_makes_its_snapshot_unknown_and_a_lone_one_exit_13(
    run: Run, tmp_path: Path, password: str
) -> None:
    """Damaged, not deleted (test_scan.py deletes one): the pack is there, a blob in it
    fails authentication."""
    system, data, rng = office(run, tmp_path, 2)
    ordinary_day(data, rng, 1)
    system.backup()
    ids = system.snapshot_ids()
    _damage(system.location, _snapshot(system.location, ids[1]).tree)

    done = system.cli("scan", "web", "--json")
    assert done.code == 0, done.err  # the newest readable one is clean: listed, not fatal
    report = json.loads(done.out)
    assert [s["verdict"] for s in report["snapshots"]] == ["clean", "unknown"]
    assert report["snapshots"][1]["reasons"][0].startswith("cannot be read: ")
    assert f"1 snapshot(s) could not be read and are unknown ({ids[1][:8]})" in done.err
    assert report["last_clean"] == ids[0]

    # The only snapshot of another system, damaged the same way: nothing was judged.
    only, _, _ = office(run, tmp_path / "lone", 4)
    (snapshot_id,) = only.snapshot_ids()
    _damage(only.location, _snapshot(only.location, snapshot_id).tree)
    done = only.cli("scan", "web")
    assert done.code == 13, done.err
    assert done.err.startswith("drplan: no snapshot of web could be read (1 unknown)")
    assert "Traceback" not in done.err


def _snapshot(location: Path, snapshot_id: str) -> Snapshot:
    return next(s for s in open_repo(str(location)).snapshots() if s.id == snapshot_id)


def _file(location: Path, snapshot_id: str, path: Path) -> Node:
    """The node of the file ``path`` (absolute) in that snapshot."""
    repo = open_repo(str(location))
    nodes = repo.load_tree(_snapshot(location, snapshot_id).tree)
    for part in path.parts[1:]:
        node = next(n for n in nodes if n.name == part.encode())
        if node.subtree is None:
            return node
        nodes = repo.load_tree(node.subtree)
    raise AssertionError(f"{path} is a directory")


def _damage(location: Path, blob: bytes) -> None:
    """One byte in the middle of a stored blob changed in place: its authentication fails."""
    where = open_repo(str(location)).index.lookup(blob)
    assert where is not None
    pack = location / pack_name(where.pack.id)
    raw = bytearray(pack.read_bytes())
    raw[where.entry.offset + where.entry.stored_length // 2] ^= 0xFF
    pack.write_bytes(bytes(raw))
