"""``python -m torture``: every trial kind at the scale asked; the table at the end.

    python -m torture [--scale full|sample] [--seed N] [--only KIND] [--where local|s3]
                      [--trial-seed SEED] [--fuzz-examples N] [--write docs/reliability.md]

Exit status 1 when any trial failed.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

from torture.report import table, write_into
from torture.run import SCALES, run_kind, suites
from torture.world import world

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m torture", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--seed", type=int, default=None, help="the run's seed (default: random)")
    parser.add_argument(
        "--only",
        help="one kind: backup, prune, copy, restore, 'wal push', 'wal stream',"
        " 'backup beside prune', flip, fuzz, 'S3 faults', 'disk full'",
    )
    parser.add_argument("--where", choices=["local", "s3"], help="with --only: one location kind")
    parser.add_argument("--trial-seed", type=int, help="with --only and --where: one trial")
    parser.add_argument("--fuzz-examples", type=int, default=20_000)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "drplan-torture"
    )
    parser.add_argument("--write", type=Path, help="write the table into this document")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"torture run, seed {seed} (rerun it with --seed {seed})", flush=True)
    started = time.monotonic()
    plan = [
        (kind, where, count)
        for (kind, where), count in SCALES[args.scale].items()
        if (args.only in (None, kind)) and (args.where in (None, where))
    ]
    results = []
    with tempfile.TemporaryDirectory(dir=_made(args.workdir)) as work, world(Path(work)) as w:
        for kind, where, count in plan:
            print(f"{kind} ({where}): {count if args.trial_seed is None else 1} trials", flush=True)
            result = run_kind(w, kind, where, count, seed, args.trial_seed)
            print(
                f"  {result.trials} trials, {len(result.failures)} failed, {result.seconds:.0f}s",
                flush=True,
            )
            results.append(result)
    if args.trial_seed is None:
        for result in suites(args.scale, ROOT, args.fuzz_examples, args.only):
            print(f"{result.label}: {result.trials} passed, {len(result.failures)} failed",
                  flush=True)  # fmt: skip
            results.append(result)
    command = shlex.join(["python", "-m", "torture", *sys.argv[1:]])
    text = table(results, command, seed, time.monotonic() - started)
    print(text)
    if args.write:
        write_into(args.write, text)
    return 1 if any(r.failures for r in results) else 0


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
