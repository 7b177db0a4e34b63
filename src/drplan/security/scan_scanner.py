"""An external malware scanner (ClamAV's ``clamscan``, or any command) run over snapshots
restored into a scratch directory, for `drplan scan --scanner CMD` (docs/security.md,
"Scanners and YARA").

The command is split like a shell would split it, but no shell runs it: ``{dir}`` in an
argument is replaced by the restored tree (the command gets it as its last argument
when it names no ``{dir}``). Its exit status says what it found: 0 clean; one of the
``found`` statuses (clamscan's 1 by default, or any non-zero status) found something;
any other, a signal, a time-out or a restore that failed, an error. What it printed is
kept as evidence (``LINES_KEPT`` lines, the restored tree's prefix taken off each, so the
paths are the system's own).

Each snapshot is restored into a directory of its own under the scratch base
(``STATE/scan``, or ``--scratch DIR``/``drplan-scan``), readable by this user only: the
restored tree may hold the attacker's files. It is removed once scanned, on failure and
on Ctrl-C too; what a killed scan left is removed by the next one (``drills.leftovers``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from drplan.drills.leftovers import claim, clear_abandoned, prefix
from drplan.errors import DrplanError, UsageError
from drplan.nesting import remove_tree
from drplan.recovery.files import RestoreOptions, restore_files
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot

PLACEHOLDER = "{dir}"
CLAMSCAN_FOUND = frozenset({1})  # clamscan: 0 clean, 1 virus found, 2 an error
LINES_KEPT = 20  # of the scanner's output, per snapshot, as evidence (and a count)
LINE_CHARS = 400  # one line kept at most this long
ERROR_LINES = 3  # the last lines of its error output, told when it fails
SCRATCH_NAME = "drplan-scan"  # below --scratch DIR: leftovers are only ever looked for here

Outcome = Literal["clean", "found", "error"]


@dataclass(frozen=True)
class Scanner:
    """A scanner command line and what its exit statuses mean."""

    argv: tuple[str, ...]  # with PLACEHOLDER where the restored tree goes
    found: frozenset[int] | None  # the statuses that mean it found something; None: any non-zero
    timeout: float  # seconds per snapshot
    scratch: Path  # where the snapshots are restored, one directory each

    @classmethod
    def parse(cls, command: str, found: str, timeout: float, scratch: Path) -> Scanner:
        """The scanner of `--scanner CMD --scanner-found EXITS`; a command that cannot run
        here is refused before anything is restored (exit 2)."""
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageError(f"--scanner {command!r}: {exc}") from None
        if not argv:
            raise UsageError("--scanner needs a command", hint="e.g. --scanner 'clamscan -r"
                             " --infected --no-summary {dir}'")  # fmt: skip
        if shutil.which(argv[0]) is None:
            raise UsageError(f"--scanner: {argv[0]} is not a command that can be run here",
                             hint="install it, or give its full path")  # fmt: skip
        if not any(PLACEHOLDER in arg for arg in argv):
            argv.append(PLACEHOLDER)
        return cls(tuple(argv), _found(found), timeout, scratch)

    def argv_for(self, directory: str) -> list[str]:
        return [arg.replace(PLACEHOLDER, directory) for arg in self.argv]

    def outcome(self, code: int) -> Outcome:
        if code == 0:
            return "clean"
        if code > 0 and (self.found is None or code in self.found):
            return "found"
        return "error"  # another status, or a signal (negative)


def _found(text: str) -> frozenset[int] | None:
    if text.strip().lower() == "nonzero":
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and 0 < int(part) < 256 for part in parts):
        raise UsageError(f"--scanner-found {text!r}: exit statuses from 1 to 255, comma-separated,"
                         " or 'nonzero'", hint="clamscan's is 1 (the default)")  # fmt: skip
    return frozenset(int(part) for part in parts)


@dataclass
class ScannerResult:
    """One snapshot scanned: the outcome, and what the scanner said."""

    outcome: Outcome
    exit_code: int | None  # None: it did not end by itself, or never ran
    lines: list[str] = field(default_factory=list)  # its output (error output, on an error)
    lines_total: int = 0
    seconds: float = 0.0
    error: str | None = None  # why it is an error

    def reason(self) -> str:
        if self.outcome == "found":
            first = f": {self.lines[0]}" if self.lines else ""
            return f"the scanner found something (exit {self.exit_code}){first}"
        return f"the scanner could not judge it: {self.error}"

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "exit_code": self.exit_code, "lines": self.lines,
                "lines_total": self.lines_total, "seconds": round(self.seconds, 3),
                "error": self.error}  # fmt: skip


def scratch_base(scratch: str | None, state: str) -> Path:
    """``--scratch DIR``'s own subdirectory, else the state directory's ``scan``."""
    return Path(scratch) / SCRATCH_NAME if scratch else Path(state) / "scan"


def refuse_overlap(base: Path, places: dict[str, list[str]]) -> None:
    """A restored snapshot may hold the attacker's files: never inside what a system of
    the plan backs up or runs on (``places``: system -> its paths)."""
    base = base.resolve()
    for system, paths in places.items():
        for place in paths:
            live = Path(place).resolve()
            if base == live or live in base.parents:
                raise UsageError(
                    f"the scanner's scratch directory {base} lies inside {live}, system"
                    f" {system}'s: a snapshot is never restored into what is backed up",
                    hint="give --scratch a directory of its own",
                )


def scan_snapshot(
    scanner: Scanner, repo: Repository, snapshot: Snapshot, tell: Callable[[str], None]
) -> ScannerResult:
    """Restore ``snapshot`` under the scratch base, run the scanner over it, remove it."""
    base = scanner.scratch
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    clear_abandoned(base)  # what a killed scan left
    free = shutil.disk_usage(base).free
    needs = snapshot.summary.bytes_total
    if needs > free:
        return ScannerResult("error", None, error=f"{base} has {_mib(free)} free, the snapshot"
                             f" needs {_mib(needs)}: nothing restored")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix=prefix("scan"), dir=base))  # mode 0700
    try:
        claim(root)
        tree = root / "tree"
        tell(f"scanner: restoring {snapshot.short_id} ({snapshot.summary.files} files,"
             f" {_mib(needs)}) into {tree}")  # fmt: skip
        try:
            restored = restore_files(repo, snapshot, RestoreOptions(str(tree)))
        except DrplanError as exc:
            return ScannerResult("error", None, error=f"the restore failed: {exc.message}")
        if restored.failed:
            return ScannerResult("error", None, error=f"{len(restored.failed)} file(s) could not"
                                 f" be restored, e.g. {restored.failed[0]}")  # fmt: skip
        tell(f"scanner: running {shlex.join(scanner.argv_for(str(tree)))}")
        result = _run(scanner, tree)
        tell(f"scanner: {snapshot.short_id} {result.outcome} ({result.seconds:.1f}s)")
        return result
    finally:
        _remove(root)


def _run(scanner: Scanner, tree: Path) -> ScannerResult:
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # Files, not pipes: a scanner listing a million files never blocks on a full pipe.
        try:
            proc = subprocess.Popen(scanner.argv_for(str(tree)), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)  # fmt: skip
        except OSError as exc:
            return ScannerResult("error", None, error=f"cannot run {scanner.argv[0]}:"
                                 f" {exc.strerror}")  # fmt: skip
        code: int | None
        try:
            code = proc.wait(scanner.timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            code = None
        except BaseException:  # Ctrl-C: no scanner is left running over a removed tree
            _stop(proc)
            raise
        seconds = time.monotonic() - started
        strip = str(tree)
        lines, total = _head(out, strip)
        if code is None:
            return ScannerResult("error", None, lines, total, seconds,
                                 f"still running after {scanner.timeout:g}s: stopped")  # fmt: skip
        outcome = scanner.outcome(code)
        if outcome != "error":
            return ScannerResult(outcome, code, lines, total, seconds)
        tail = _tail(err, strip) or lines[-ERROR_LINES:]
        said = f": {' / '.join(tail)}" if tail else ""
        what = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        return ScannerResult("error", code, tail, len(tail), seconds, f"{what}{said}")


def _head(out: IO[bytes], strip: str) -> tuple[list[str], int]:
    """The first LINES_KEPT non-empty lines of ``out`` and how many there are."""
    out.seek(0)
    kept: list[str] = []
    total = 0
    for raw in out:
        line = _clean(raw, strip)
        if line:
            total += 1
            if len(kept) < LINES_KEPT:
                kept.append(line)
    return kept, total


def _tail(err: IO[bytes], strip: str) -> list[str]:
    err.seek(0)
    lines = (_clean(raw, strip) for raw in err)
    return list(deque((line for line in lines if line), maxlen=ERROR_LINES))


def _clean(raw: bytes, strip: str) -> str:
    return raw.decode("utf-8", "replace").rstrip().replace(strip, "")[:LINE_CHARS]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """The scanner's whole process group, killed at once: a scan cut short keeps nothing
    worth a graceful end, and the tree it reads is removed next."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _remove(root: Path) -> None:
    """Remove a restored tree. Its directories came back with the snapshot's modes; one
    without write permission could not be emptied by a user other than root."""
    if os.geteuid() != 0:
        stack = [root]
        while stack:
            here = stack.pop()
            with contextlib.suppress(OSError):
                if not stat.S_ISDIR(os.lstat(here).st_mode):
                    continue
                os.chmod(here, 0o700)
                stack.extend(Path(entry.path) for entry in os.scandir(here)
                             if entry.is_dir(follow_symlinks=False))  # fmt: skip
    remove_tree(root, ignore_errors=True)


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"
