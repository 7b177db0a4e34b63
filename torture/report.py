"""The torture run as a table, printed and written into docs/reliability.md.

A failure is counted by what it was: an internal error (exit 70), something lost (a
snapshot or an archived WAL segment), an undetected flip, or anything else wrong
(a repository that no longer checks clean, a restore or a fetch that is not exact).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from pathlib import Path

from torture.run import KindResult

BEGIN, END = "<!-- torture:begin -->", "<!-- torture:end -->"


def classify(message: str) -> str:
    if "internal error" in message:
        return "internal"
    if "lost" in message:
        return "lost"
    if "undetected" in message:
        return "undetected"
    return "other"


def table(results: list[KindResult], command: str, seed: int, seconds: float) -> str:
    lines = [
        f"Run of {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, seed {seed}, {seconds / 60:.0f} min:"
        f" `{command}`",
        "",
        f"Machine: {_cpu()}, {os.cpu_count()} cores, Linux {platform.release()},"
        f" Python {platform.python_version()}.",
        "",
        "| trials | what | killed before the end (or, beside prune: one refused on the lock) | internal errors | lost | undetected | other failures |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    totals = {"trials": 0, "internal": 0, "lost": 0, "undetected": 0, "other": 0}
    for r in results:
        kinds = [classify(f.message) for f in r.failures]
        counts = {k: kinds.count(k) for k in ("internal", "lost", "undetected", "other")}
        for key, value in counts.items():
            totals[key] += value
        totals["trials"] += r.trials
        killed = f"{r.killed}" if r.where != "-" and r.kind != "flip" else "-"
        lines.append(
            f"| {r.trials:,} | {r.label or r.kind} | {killed} | {counts['internal']} |"
            f" {counts['lost']} | {counts['undetected']} | {counts['other']} |"
        )
    lines.append(
        f"| **{totals['trials']:,}** | **all** | | **{totals['internal']}** | **{totals['lost']}**"
        f" | **{totals['undetected']}** | **{totals['other']}** |"
    )
    failed = [(r, f) for r in results for f in r.failures]
    if failed:
        lines += [
            "",
            "Failures (each reruns with `python -m torture --only KIND --where WHERE --trial-seed SEED`):",
            "",
        ]
        lines += [f"- {r.kind} ({r.where}), seed {f.seed}: {f.message}" for r, f in failed[:40]]
    return "\n".join(lines) + "\n"


def write_into(doc: Path, text: str) -> None:
    """Replace what stands between the markers in ``doc`` with ``text``."""
    current = doc.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(current):
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} markers to write the table between")
    doc.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}{END}", current))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
