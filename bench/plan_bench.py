"""Plan loading, validation and lint: how long they take, against a bare YAML parse of the same file.

    python bench/plan_bench.py [--systems N] [--repeat R]

A plan is read by every command, by the daemon at each reload and by CI on each
change, so loading must stay cheap as plans grow. The peer is PyYAML's own
``safe_load`` (libyaml when available) of the same text: the floor any YAML-based
tool pays. Figures are medians of R runs; the ratio is the one to quote.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from drplan.plan.lint import RULES, LintContext, run_lint
from drplan.plan.loader import load_plan_text
from drplan.plan.schedule import clear_caches
from drplan.plan.summary import summarize

ROOT = Path(__file__).resolve().parent.parent
SMARTWATTS = ROOT / "examples" / "smartwatts" / "plan.yaml"
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def synthetic_plan(systems: int) -> str:
    """A large plan: N systems with three jobs each, all references valid."""
    lines = [
        "version: 1",
        "name: Synthetic",
        "objectives:",
        "  rto: {critical: 4h, important: 8h, non_critical: 12h, full_platform: 12h}",
        "  rpo: {database: 15m, files: 4h}",
        "locations:",
        "  local: {role: primary, kind: local, path: /var/backups}",
        "  cloud: {role: cloud, kind: s3, bucket: dr-bench, immutability: {days: 30}}",
        "systems:",
    ]
    tiers = ["critical", "important", "non_critical"]
    for i in range(systems):
        dep = f", depends_on: [db{i - 1}]" if i % 10 else ""
        lines.append(
            f"  db{i}: {{kind: postgres, tier: {tiers[i % 3] if not dep else 'non_critical'},"
            f" data_classes: [database], connection: 'host=db{i}'{dep}}}"
        )
    lines.append("jobs:")
    for i in range(systems):
        for kind, schedule in (
            ("full", "'0 1 * * *'"),
            ("incremental", "'*/15 * * * *'"),
            ("wal", "continuous"),
        ):
            lines.append(
                f"  db{i}-{kind}: {{system: db{i}, type: {kind}, schedule: {schedule},"
                " retention: {keep_within: 30d}, locations: [local, cloud]}"
            )
    lines.append("drills: {all: {kind: full_platform, schedule: '@monthly'}}")
    return "\n".join(lines) + "\n"


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def cold(fn: Callable[[], object]) -> object:
    clear_caches()
    return fn()


def measure(name: str, text: str, repeat: int) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    parse = median_seconds(lambda: yaml.load(text, Loader=Loader), repeat)
    load = median_seconds(lambda: load_plan_text(text, "bench.yaml"), repeat)
    plan = load_plan_text(text, "bench.yaml").plan
    # Cold, as in one CLI call: cron evaluations are cached within a process.
    lint = median_seconds(lambda: cold(lambda: run_lint(LintContext(plan, now), RULES)), repeat)
    show = median_seconds(lambda: cold(lambda: summarize(plan, now).as_json()), repeat)
    kib = len(text.encode()) / 1024
    return [
        f"| {name} | {kib:.0f} KiB | {parse * 1000:.1f} ms | {load * 1000:.1f} ms"
        f" | {load / parse:.1f}x | {lint * 1000:.1f} ms | {show * 1000:.1f} ms |"
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" PyYAML {yaml.__version__} ({'libyaml' if Loader is not yaml.SafeLoader else 'pure Python'})"
    )
    print(f"command: python bench/plan_bench.py --systems {args.systems} --repeat {args.repeat}\n")
    print(
        "| plan | size | peer: yaml.safe_load | drplan load+validate | ratio | lint | show --json |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in measure("SmartWatts example", SMARTWATTS.read_text(), args.repeat):
        print(row)
    synthetic = synthetic_plan(args.systems)
    for row in measure(
        f"synthetic, {args.systems} systems / {args.systems * 3} jobs",
        synthetic,
        max(3, args.repeat // 5),
    ):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
