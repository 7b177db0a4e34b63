"""A drill's evidence: its whole result as a JSON file, with the SHA-256 of its content
beside it (``sha256sum`` format, so ``sha256sum -c`` checks it), and one row in the
catalog with the figures KPIs are computed from.

The file is written to a temporary name, synced and renamed: evidence is either whole
or absent, never half a file an auditor could be shown.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from drplan.drills.results import DrillResult


def write_evidence(result: DrillResult, directory: Path) -> tuple[Path, str]:
    """Write the evidence of ``result`` into ``directory``; its path and SHA-256."""
    directory.mkdir(parents=True, exist_ok=True)
    body = json.dumps(result.as_dict(), indent=2, sort_keys=True).encode() + b"\n"
    digest = hashlib.sha256(body).hexdigest()
    path = directory / f"{result.drill}-{result.started_at:%Y%m%dT%H%M%SZ}-{result.run}.json"
    _durable(path, body)
    _durable(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n".encode())
    return path, digest


def catalog_row(result: DrillResult, path: Path, digest: str) -> dict[str, Any]:
    """The drill's figures for KPIs: the slowest RTO and largest RPO of its systems, and
    whether all met their objectives and passed every validation."""
    systems = result.systems
    rtos = [s.rto_seconds for s in systems if s.rto_seconds is not None]
    rpos = [s.rpo_seconds for s in systems if s.rpo_seconds is not None]
    recovered = bool(systems) and len(rtos) == len(systems)
    measured = bool(systems) and len(rpos) == len(systems)
    rto_met = recovered and all(
        s.rto_seconds is not None and s.rto_seconds <= s.rto_objective_seconds for s in systems
    )
    rpo_met = measured and all(
        s.rpo_objective_seconds is None or (s.rpo_seconds or 0.0) <= s.rpo_objective_seconds
        for s in systems
    )
    intact = recovered and all(v.outcome != "failed" for s in systems for v in s.validations)
    return {
        "run": result.run,
        "drill": result.drill,
        "kind": result.kind,
        "started_at": result.started_at,
        "ended_at": result.ended_at,
        "passed": int(result.passed),
        "rto_seconds": max(rtos) if recovered else None,
        "rto_met": int(rto_met),
        "rpo_seconds": max(rpos) if measured else None,
        "rpo_met": int(rpo_met),
        "integrity": int(intact),
        "evidence": str(path),
        "sha256": digest,
        "summary": "; ".join(result.failures),
        "result": json.dumps(result.as_dict(), sort_keys=True),
    }


def _durable(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
