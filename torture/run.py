"""Running trials: by kind and count, each from its own seed, the failures kept with it.

A kind's trials share one world (a repository, a source tree) and run in order; a
failed trial is recorded with its seed and the kind goes on (a broken repository
fails the trials after it too, which the table shows). ``SCALES`` says how many
trials of each kind a run makes: ``full`` for ``make torture``, ``sample`` for
``make test``.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from torture.concurrent import BackupBesidePrune
from torture.drill import DrillKill
from torture.flips import Flips
from torture.kill9 import KINDS
from torture.stream import StreamKill
from torture.world import TrialFailed, World


class Trials(Protocol):
    """The trials of one kind in one world (``kill9.Kind``, ``flips.Flips``)."""

    label: str

    def trial(self, rng: random.Random) -> bool: ...

    def finish(self) -> None: ...


Factory = Callable[[World, str, random.Random], Trials]

# (kind, where): trials. kill -9: 1,000 or more; flips: 500 or more.
SCALES: dict[str, dict[tuple[str, str], int]] = {
    "full": {
        ("backup", "local"): 200,
        ("backup", "s3"): 100,
        ("prune", "local"): 120,
        ("prune", "s3"): 60,
        ("copy", "local"): 100,
        ("copy", "s3"): 80,
        ("restore", "local"): 120,
        ("restore", "s3"): 60,
        ("wal push", "local"): 100,
        ("wal push", "s3"): 60,
        ("wal stream", "local"): 40,
        ("wal stream", "s3"): 20,
        ("drill", "local"): 20,
        ("drill", "s3"): 10,
        ("backup beside prune", "local"): 20,
        ("backup beside prune", "s3"): 20,
        ("flip", "local"): 540,
    },
    "sample": {
        ("backup", "local"): 3,
        ("backup", "s3"): 2,
        ("prune", "local"): 2,
        ("copy", "s3"): 2,
        ("restore", "local"): 2,
        ("wal push", "local"): 2,
        ("wal stream", "local"): 2,
        ("drill", "local"): 1,
        ("backup beside prune", "local"): 2,
        ("flip", "local"): 12,
    },
}


@dataclass
class Failure:
    trial: int
    seed: int
    message: str


@dataclass
class KindResult:
    kind: str
    where: str
    label: str = ""
    trials: int = 0
    killed: int = 0  # kills that came before the command ended (the rest completed)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def command(self) -> str:
        return f"python -m torture --only '{self.kind}' --where {self.where}"


def trial_seed(run_seed: int, kind: str, where: str, number: int) -> int:
    digest = hashlib.sha256(f"{run_seed}/{kind}/{where}/{number}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def make(kind: str) -> Factory:
    if kind == "flip":
        return Flips
    if kind == BackupBesidePrune.name:
        return BackupBesidePrune
    if kind == StreamKill.name:
        return StreamKill
    if kind == DrillKill.name:
        return DrillKill
    return KINDS[kind]


def run_kind(
    world: World,
    kind: str,
    where: str,
    count: int,
    run_seed: int,
    only_seed: int | None = None,
    say: Callable[[str], None] = print,
) -> KindResult:
    """``count`` trials of ``kind`` in ``where`` (or the one trial of ``only_seed``)."""
    result = KindResult(kind, where)
    started = time.monotonic()
    setup_seed = trial_seed(run_seed, kind, where, -1) if only_seed is None else only_seed
    try:
        trials = make(kind)(world, where, random.Random(setup_seed))
    except (TrialFailed, subprocess.SubprocessError) as exc:
        result.failures.append(Failure(-1, setup_seed, f"setting up: {exc}"))
        return result
    result.label = trials.label
    seeds = (
        [only_seed]
        if only_seed is not None
        else [trial_seed(run_seed, kind, where, n) for n in range(count)]
    )
    for number, seed in enumerate(seeds):
        result.trials += 1
        try:
            if trials.trial(random.Random(seed)):
                result.killed += 1
        except (TrialFailed, subprocess.SubprocessError, OSError) as exc:
            failure = Failure(number, seed, _one_line(exc))
            result.failures.append(failure)
            say(f"FAILED {kind} ({where}) trial {number}, seed {seed}: {failure.message}")
        except Exception:  # a bug of the suite itself: shown whole, still with its seed
            message = traceback.format_exc(limit=3)
            result.failures.append(Failure(number, seed, message))
            say(f"FAILED {kind} ({where}) trial {number}, seed {seed}:\n{message}")
    try:
        trials.finish()
    except (TrialFailed, subprocess.SubprocessError, OSError) as exc:
        result.failures.append(Failure(len(seeds), setup_seed, f"at the end: {_one_line(exc)}"))
        say(f"FAILED {kind} ({where}) at the end (setup seed {setup_seed}): {exc}")
    result.seconds = time.monotonic() - started
    return result


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]


def suite_runs(
    kind: str, label: str, root: Path, args: list[str], env: dict[str, str], rounds: int = 1
) -> KindResult:
    """Tests of ``make test`` run ``rounds`` times over (the proxy's and the disk's
    attacks, the decoders fuzzed with more inputs): each test run counts as a trial."""
    result = KindResult(kind, "-", label=label)
    started = time.monotonic()
    for round_ in range(rounds):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
             str(root), *args],
            capture_output=True, text=True, cwd=root, check=False, env={**os.environ, **env},
        )  # fmt: skip
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
        result.trials += _passed_and_failed(summary)
        if proc.returncode != 0:
            failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
            result.failures += [Failure(round_, 0, line) for line in failed or [summary]]
    result.seconds = time.monotonic() - started
    return result


def suites(scale: str, root: Path, fuzz_examples: int, only: str | None) -> list[KindResult]:
    """The attacks that live in the test suite, at the scale asked (``only``: one of them)."""
    rounds = 3 if scale == "full" else 1
    examples = fuzz_examples if scale == "full" else 200
    specs = [
        ("fuzz", f"decoders fuzzed ({examples:,} random inputs per test)",
         ["-k", "fuzz", "tests/unit"], {"DRPLAN_FUZZ_EXAMPLES": str(examples)}, 1),
        ("S3 faults", f"S3 faults through the proxy ({rounds} rounds of test_s3_faults.py)",
         ["tests/integration/test_s3_faults.py"], {}, rounds),
        ("disk full", f"a full disk ({rounds} rounds of test_disk_full.py)",
         ["tests/integration/test_disk_full.py"], {}, rounds),
    ]  # fmt: skip
    return [
        suite_runs(kind, label, root, args, env, times)
        for kind, label, args, env, times in specs
        if only in (None, kind)
    ]


def _passed_and_failed(summary: str) -> int:
    total = 0
    for part in summary.replace("=", " ").split(","):
        words = part.split()
        for i, word in enumerate(words[1:], 1):
            if word in ("passed", "failed") and words[i - 1].isdigit():
                total += int(words[i - 1])
    return total
