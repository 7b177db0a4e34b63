"""A drill's evidence: its whole result as a JSON file, with the SHA-256 of its content
beside it (``sha256sum`` format, so ``sha256sum -c`` checks it), and one row in the
catalog with the figures KPIs are computed from.

The file is written to a temporary name, synced and renamed: evidence is either whole
or absent, never half a file an auditor could be shown. A file that cannot be written
(the disk is full) is a one-line error, and no temporary file is left taking the space.

The evidence outlives the catalog: ``drplan catalog rebuild`` makes each drill's row
again from its file (``read_evidence``), the same way ``catalog_row`` made it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from drplan import clock
from drplan.drills.results import DrillResult
from drplan.errors import DrplanError


def write_evidence(result: DrillResult, directory: Path) -> tuple[Path, str]:
    """Write the evidence of ``result`` into ``directory``; its path and SHA-256."""
    directory.mkdir(parents=True, exist_ok=True)
    body = json.dumps(result.as_dict(), indent=2, sort_keys=True).encode() + b"\n"
    digest = hashlib.sha256(body).hexdigest()
    path = directory / f"{result.drill}-{result.started_at:%Y%m%dT%H%M%SZ}-{result.run}.json"
    try:
        _durable(path, body)
        _durable(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n".encode())
    except OSError as exc:
        verdict = "passed" if result.passed else "did not pass"
        raise DrplanError(
            f"drill {result.drill} {verdict}, but its evidence could not be written:"
            f" {exc.strerror or exc}: {exc.filename or directory}",
            hint=f"free space in {directory} (or make it writable) and run the drill again",
        ) from None
    return path, digest


def catalog_row(result: DrillResult, path: Path, digest: str) -> dict[str, Any]:
    """The drill's figures for KPIs: the slowest RTO and largest RPO of its systems, and
    whether all met their objectives and passed every validation."""
    row = evidence_row(result.as_dict(), path, digest)
    row["started_at"], row["ended_at"] = result.started_at, result.ended_at  # to the second
    return row


def evidence_row(data: dict[str, Any], path: Path, digest: str) -> dict[str, Any]:
    """``catalog_row`` from the result as its evidence file holds it."""
    systems = data["systems"]
    rtos = [s["rto"]["seconds"] for s in systems if s["rto"]["seconds"] is not None]
    rpos = [s["rpo"]["seconds"] for s in systems if s["rpo"]["seconds"] is not None]
    recovered = bool(systems) and len(rtos) == len(systems)
    measured = bool(systems) and len(rpos) == len(systems)
    rto_met = recovered and all(s["rto"]["met"] for s in systems)
    rpo_met = measured and all(s["rpo"]["met"] for s in systems)
    intact = recovered and all(v["outcome"] != "failed" for s in systems for v in s["validations"])
    ended = data.get("ended_at")
    return {
        "run": data["run"],
        "drill": data["drill"],
        "kind": data["kind"],
        "started_at": clock.parse_rfc3339(data["started_at"]),
        "ended_at": clock.parse_rfc3339(ended) if ended else None,
        "passed": int(bool(data["passed"])),
        "rto_seconds": max(rtos) if recovered else None,
        "rto_met": int(rto_met),
        "rpo_seconds": max(rpos) if measured else None,
        "rpo_met": int(rpo_met),
        "integrity": int(intact),
        "evidence": str(path),
        "sha256": digest,
        "summary": "; ".join(data["failures"]),
        "result": json.dumps(data, sort_keys=True),
    }


def read_evidence(directory: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The catalog row of every evidence file in ``directory`` that matches the SHA-256
    written beside it, oldest first; and why each other file was left out (by path)."""
    rows, left_out = [], {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            body = path.read_bytes()
            recorded = path.with_name(path.name + ".sha256").read_text().split()[0]
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            left_out[str(path)] = f"its SHA-256 file cannot be read ({exc})"
            continue
        digest = hashlib.sha256(body).hexdigest()
        if digest != recorded:
            left_out[str(path)] = "its content does not match the SHA-256 written beside it"
            continue
        try:
            rows.append(evidence_row(json.loads(body), path, digest))
        except (ValueError, KeyError, TypeError) as exc:
            left_out[str(path)] = f"it is not a drill's evidence ({type(exc).__name__}: {exc})"
    return sorted(rows, key=lambda row: row["started_at"]), left_out


def _durable(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # half a file, taking space and fooling nobody
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
