"""File backup, unchanged re-backup and restore: drplan against restic, same data, same disk.

    python bench/files_bench.py [--scale S] [--workdir DIR] [--runs N]

The dataset comes from ``../shared/bench/make_dataset.py`` next to the repository, or
its copy ``bench/make_dataset.py`` in a clone without it (scale 1.0: about 0.9 GB of small JSON files, compressible logs and random blobs)
and is reused while its marker file says it was completed at the same scale.

For each tool, in the same run and under the same work directory, the script
measures the wall time of a first backup, of an unchanged re-backup and of a full
restore into an empty directory; the repository size on disk (allocated blocks, as
``du -sB1`` counts them, after both backups); and the peak RSS of each command.
Peak RSS comes from GNU ``/usr/bin/time -f %M`` when installed (the maximum RSS of
the command or of its largest descendant), else from a fresh Python wrapper
process reading ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after its only child
exits. As root, the page cache is dropped before each timed step; the output says
whether it was. Both restores are compared file by file (path, size, SHA-256) with
the dataset, and any difference is fatal.

Both tools run with their defaults: drplan with zstd level 3 and as many workers
as cores, restic with repository version 2 and ``--compression auto``; GOMAXPROCS
is removed from the environment so restic uses every core too. restic's cache is
put under the work directory, so it lives on the same disk. With ``--runs N`` each
tool is measured N times, alternating which tool goes first, and the medians are
reported.

Nothing is deleted while steps are timed: every run keeps its repository and
restore until the end. On ext4 without a journal (as on the machines here) the
inode allocator skips inodes freed in the last 60 seconds (300 while their blocks
are dirty), and creating 20,000 files just after deleting 20,000 cost either tool
up to a third of its restore time, depending on which came second. Leftovers of an
interrupted earlier run are removed first; a run that starts within 65 seconds of
the last removal waits for the rest of them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drplan.repo.config import FORMAT_VERSION

SHARED_DATASET = Path(__file__).resolve().parents[2] / "shared" / "bench" / "make_dataset.py"
MAKE_DATASET = (
    SHARED_DATASET if SHARED_DATASET.is_file() else Path(__file__).with_name("make_dataset.py")
)
DRPLAN = Path(sys.executable).parent / "drplan"
GNU_TIME = Path("/usr/bin/time")
PASSWORD = "drplan-bench-not-a-secret"
MARKER = "dataset.ready"
GIB = 1 << 30
MIB = 1 << 20
TOOLS = ("drplan", "restic")
# Environment variables that would point either tool elsewhere or change how it runs.
SCRUBBED_ENV = ("GOMAXPROCS", "DRPLAN_PLAN", "DRPLAN_REPO", "DRPLAN_PASSWORD")
RESTIC_FILES = re.compile(r"Files:\s+(\d+) new,\s+(\d+) changed,\s+(\d+) unmodified")
# A wrapper measuring one command when GNU time is missing: wall seconds and peak RSS (KiB).
RSS_WRAPPER = """\
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[2:]).returncode
wall = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as out:
    out.write(f"{wall} {rss}\\n")
sys.exit(code)
"""


class BenchError(Exception):
    """A failure that makes the figures meaningless: reported, never skipped."""


@dataclass
class Step:
    """One timed command."""

    seconds: float
    rss_kib: int
    stdout: str


@dataclass
class Measurement:
    """One tool's figures from one run."""

    first_backup: Step
    rebackup: Step
    restore: Step
    repo_bytes: int
    repo_apparent_bytes: int


@dataclass
class Context:
    """What every step needs: where to work, how to measure, what the dataset holds."""

    workdir: Path
    dataset: Path
    manifest: list[tuple[str, str, int, str]]
    drop_caches: bool
    env: dict[str, str] = field(default_factory=dict)


# -- machine and environment ------------------------------------------------------------------


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ram_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    return 0.0


def os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def filesystem_of(path: Path) -> str:
    """The device and type of the file system holding ``path`` (longest mount prefix)."""
    best = ("", "?", "?")
    target = str(path.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            device, mount, fstype = line.split()[:3]
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best[0]):
                best = (mount, device, fstype)
    return f"{best[1]} ({best[2]}, mounted on {best[0]})"


def probe_drop_caches() -> tuple[bool, str]:
    """Whether the page cache can be dropped here, and a sentence saying so."""
    if os.geteuid() != 0:
        return False, "no (not root: timed steps may read from a warm page cache)"
    try:
        drop_page_cache()
    except OSError as exc:
        return False, f"no ({exc.strerror}: timed steps may read from a warm page cache)"
    return True, "yes (sync; echo 3 > /proc/sys/vm/drop_caches before each timed step)"


def drop_page_cache() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def command_output(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise BenchError(f"{shlex.join(argv)} failed (exit {proc.returncode}): {proc.stderr}")
    return proc.stdout.strip()


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env = {k: v for k, v in env.items() if not k.startswith("RESTIC_")}
    env["DRPLAN_PASSWORD"] = env["RESTIC_PASSWORD"] = PASSWORD
    return env


# -- dataset -----------------------------------------------------------------------------------


def ensure_dataset(workdir: Path, scale: float) -> tuple[Path, bool]:
    """The dataset directory, generated unless a marker says it is complete at this scale."""
    dataset = workdir / "dataset"
    marker = workdir / MARKER
    generator = hashlib.sha256(MAKE_DATASET.read_bytes()).hexdigest()
    wanted = {"scale": scale, "generator_sha256": generator}
    if dataset.is_dir() and marker.is_file():
        try:
            if json.loads(marker.read_text()) == wanted:
                return dataset, True
        except ValueError:
            pass
    marker.unlink(missing_ok=True)
    shutil.rmtree(dataset, ignore_errors=True)
    print(f"generating the dataset at scale {scale} in {dataset} ...", file=sys.stderr)
    command_output([sys.executable, str(MAKE_DATASET), str(dataset), str(scale)])
    os.sync()
    marker.write_text(json.dumps(wanted) + "\n")
    return dataset, False


def check_free_space(workdir: Path, scale: float, runs: int, dataset_ready: bool) -> None:
    """Room for the dataset plus every run's repository and restore (kept till the end)."""
    per_run = 2 * 1.6 * scale * GIB  # both tools: a repository (~0.65x) and a restore (1x)
    need = per_run * runs + 0.5 * GIB + (0 if dataset_ready else 1.0 * scale * GIB)
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise BenchError(
            f"{workdir} has {free / GIB:.1f} GiB free; this run needs about {need / GIB:.1f} GiB"
            " (choose another --workdir or a smaller --scale)"
        )


SETTLE_SECONDS = 65
DELETED_MARKER = ".runs-deleted"  # its mtime: when the last benchmark removed its runs


def clear_leftovers(runs: Path) -> None:
    """Remove an interrupted run's files, then wait out ext4's recently-deleted window."""
    marker = runs.parent / DELETED_MARKER
    if runs.exists():
        print(f"removing leftovers in {runs} ...", file=sys.stderr)
        remove_runs(runs)
    if marker.exists():
        wait = marker.stat().st_mtime + SETTLE_SECONDS - time.time()
        if wait > 0:
            print(f"pausing {wait:.0f} s after the last deletion ...", file=sys.stderr)
            time.sleep(wait)


def remove_runs(runs: Path) -> None:
    shutil.rmtree(runs)
    os.sync()
    (runs.parent / DELETED_MARKER).touch()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def manifest(root: Path) -> list[tuple[str, str, int, str]]:
    """Every entry below ``root``, sorted: (relative path, kind, size, file SHA-256 or link target)."""
    entries: list[tuple[str, str, int, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            full, path = os.path.join(dirpath, name), os.path.normpath(os.path.join(rel, name))
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                entries.append((path, "file", st.st_size, sha256_file(full)))
            elif stat.S_ISLNK(st.st_mode):
                entries.append((path, "symlink", 0, os.readlink(full)))
            else:
                entries.append((path, "dir" if stat.S_ISDIR(st.st_mode) else "other", 0, ""))
    return sorted(entries)


def verify_restore(ctx: Context, tool: str, target: Path) -> None:
    """Both tools restore a path P under TARGET/P: compare that with the dataset, loudly."""
    restored = target / ctx.dataset.relative_to(ctx.dataset.anchor)
    if not restored.is_dir():
        raise BenchError(f"{tool}: restore produced no {restored} (restore left in {target})")
    got = manifest(restored)
    if got != ctx.manifest:
        want_set, got_set = set(ctx.manifest), set(got)
        missing = sorted(want_set - got_set)[:5]
        extra = sorted(got_set - want_set)[:5]
        raise BenchError(
            f"{tool}: the restore differs from the dataset ({len(want_set - got_set)} entries"
            f" missing or different, {len(got_set - want_set)} extra or different); first"
            f" expected: {missing}; first found: {extra} (restore left in {target})"
        )


def disk_usage(path: Path) -> tuple[int, int]:
    """Allocated bytes (``du -sB1``) and apparent bytes (``du -sb``) of a directory tree."""
    allocated = apparent = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in [".", *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return allocated, apparent


# -- running the tools -------------------------------------------------------------------------


def run_step(ctx: Context, argv: Sequence[str], *, cwd: Path, timed: bool = True) -> Step:
    """Run one command (dropping the page cache first if timed and allowed), with wall and RSS."""
    if timed and ctx.drop_caches:
        drop_page_cache()
    with tempfile.NamedTemporaryFile("r", dir=ctx.workdir, suffix=".rss") as out:
        if GNU_TIME.exists():
            wrapped = [str(GNU_TIME), "-f", "%M", "-o", out.name, *argv]
        else:
            wrapped = [sys.executable, "-c", RSS_WRAPPER, out.name, *argv]
        start = time.perf_counter()
        proc = subprocess.run(
            wrapped, cwd=cwd, env=ctx.env, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - start
        report = Path(out.name).read_text().split()
    if proc.returncode != 0:
        raise BenchError(
            f"{shlex.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr.strip()}"
        )
    if GNU_TIME.exists():
        rss = int(report[-1])
    else:
        seconds, rss = float(report[0]), int(report[1])
    return Step(seconds, rss, proc.stdout)


def check_unchanged(tool: str, step: Step, files: int) -> None:
    """An 'unchanged re-backup' that re-read files would measure something else: refuse it."""
    if tool == "drplan":
        summary = json.loads(step.stdout)["summary"]
        new, changed, unchanged = (
            summary["files_new"],
            summary["files_changed"],
            summary["files_unchanged"],
        )
    else:
        match = RESTIC_FILES.search(step.stdout)
        if match is None:
            raise BenchError(f"restic: no file counts in the re-backup output:\n{step.stdout}")
        new, changed, unchanged = (int(g) for g in match.groups())
    if (new, changed, unchanged) != (0, 0, files):
        raise BenchError(
            f"{tool}: the re-backup saw {new} new, {changed} changed, {unchanged} unchanged"
            f" files; expected 0, 0, {files}"
        )


def commands(tool: str, repo: Path, dataset: Path, target: Path) -> dict[str, list[str]]:
    if tool == "drplan":
        d = str(DRPLAN)
        return {
            "init": [d, "repo", "init", str(repo)],
            "backup": [d, "backup", "files", str(dataset), "--repo", str(repo), "--json"],
            "restore": [d, "restore", "latest", "--target", str(target), "--repo", str(repo)],
        }
    return {
        "init": ["restic", "init", "--repo", str(repo)],
        "backup": ["restic", "backup", str(dataset), "--repo", str(repo)],
        "restore": ["restic", "restore", "latest", "--repo", str(repo), "--target", str(target)],
    }


def measure_tool(ctx: Context, tool: str, run: int, info: dict[str, str]) -> Measurement:
    """Init, back up twice, size the repository, restore and verify; kept until the end."""
    run_dir = ctx.workdir / "runs" / f"{tool}-{run}"
    run_dir.mkdir(parents=True)
    repo, target = run_dir / "repo", run_dir / "restore"
    ctx.env["RESTIC_CACHE_DIR"] = str(run_dir / "restic-cache")
    cmd = commands(tool, repo, ctx.dataset, target)
    files = sum(1 for e in ctx.manifest if e[1] == "file")
    print(f"  {tool}: init, backup, re-backup, restore ...", file=sys.stderr)
    run_step(ctx, cmd["init"], cwd=run_dir, timed=False)
    if tool == "restic" and "restic repository" not in info:
        config = json.loads(
            command_output(["restic", "cat", "config", "--repo", str(repo)], ctx.env)
        )
        info["restic repository"] = f"version {config['version']}, compression auto (default)"
    first = run_step(ctx, cmd["backup"], cwd=run_dir)
    again = run_step(ctx, cmd["backup"], cwd=run_dir)
    check_unchanged(tool, again, files)
    allocated, apparent = disk_usage(repo)
    restore = run_step(ctx, cmd["restore"], cwd=run_dir)
    verify_restore(ctx, tool, target)
    return Measurement(first, again, restore, allocated, apparent)


# -- report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str
    value: Callable[[Measurement], float]
    show: Callable[[float], str]
    target: float | None


def seconds(x: float) -> str:
    return f"{x:.2f} s"


def mib(x: float) -> str:
    return f"{x / MIB:,.1f} MiB"


def size(x: float) -> str:
    return f"{int(x):,} B ({x / MIB:,.1f} MiB)"


METRICS = (
    Metric("first backup, wall", lambda m: m.first_backup.seconds, seconds, 0.8),
    Metric("unchanged re-backup, wall", lambda m: m.rebackup.seconds, seconds, 1.0),
    Metric("full restore, wall", lambda m: m.restore.seconds, seconds, 0.8),
    Metric("repository size on disk (du -sB1)", lambda m: m.repo_bytes, size, 1.05),
    Metric("repository size, apparent (du -sb)", lambda m: m.repo_apparent_bytes, size, None),
    Metric("peak RSS, first backup", lambda m: m.first_backup.rss_kib * 1024, mib, 2.0),
    Metric("peak RSS, re-backup", lambda m: m.rebackup.rss_kib * 1024, mib, 2.0),
    Metric("peak RSS, restore", lambda m: m.restore.rss_kib * 1024, mib, 2.0),
)


def table(results: dict[str, list[Measurement]]) -> list[str]:
    lines = [
        "| metric | drplan | restic | ratio drplan/restic | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for metric in METRICS:
        ours = statistics.median(metric.value(m) for m in results["drplan"])
        peer = statistics.median(metric.value(m) for m in results["restic"])
        ratio = ours / peer if peer else float("inf")
        if metric.target is None:
            target, met = "—", "—"
        else:
            target, met = f"≤ {metric.target:.2f}", "yes" if ratio <= metric.target else "no"
        lines.append(
            f"| {metric.name} | {metric.show(ours)} | {metric.show(peer)} | {ratio:.2f}"
            f" | {target} | {met} |"
        )
    return lines


def raw_runs(results: dict[str, list[Measurement]]) -> list[str]:
    lines = ["| run | tool | backup | re-backup | restore | repo (du) | RSS b / rb / r (MiB) |"]
    lines.append("|---|---|---|---|---|---|---|")
    for tool in TOOLS:
        for i, m in enumerate(results[tool], 1):
            rss = " / ".join(
                f"{s.rss_kib / 1024:.0f}" for s in (m.first_backup, m.rebackup, m.restore)
            )
            lines.append(
                f"| {i} | {tool} | {seconds(m.first_backup.seconds)}"
                f" | {seconds(m.rebackup.seconds)} | {seconds(m.restore.seconds)}"
                f" | {mib(m.repo_bytes)} | {rss} |"
            )
    return lines


# -- main --------------------------------------------------------------------------------------


def preflight() -> None:
    if shutil.which("restic") is None:
        raise BenchError(
            "restic is not installed: this benchmark compares against it and will not skip it"
            " (on Debian or Ubuntu: apt-get install -y restic)"
        )
    if not DRPLAN.exists():
        raise BenchError(f"{DRPLAN} not found: run this script with the venv's python")
    if not MAKE_DATASET.is_file():
        raise BenchError(f"dataset generator {MAKE_DATASET} not found")


def run(args: argparse.Namespace) -> int:
    preflight()
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    reusable = (workdir / MARKER).is_file() and (workdir / "dataset").is_dir()
    check_free_space(workdir, args.scale, args.runs, reusable)
    clear_leftovers(workdir / "runs")
    dataset, reused = ensure_dataset(workdir, args.scale)
    print("hashing the dataset ...", file=sys.stderr)
    entries = manifest(dataset)
    drop, drop_note = probe_drop_caches()
    ctx = Context(workdir, dataset, entries, drop, clean_env())
    env = ctx.env
    info = {
        "drplan": command_output([str(DRPLAN), "--version"], env),
        "drplan repository": f"format version {FORMAT_VERSION}, `drplan repo init` defaults",
        "restic": command_output(["restic", "version"], env),
    }
    results: dict[str, list[Measurement]] = {tool: [] for tool in TOOLS}
    for i in range(args.runs):
        order = TOOLS if i % 2 == 0 else TOOLS[::-1]
        print(f"run {i + 1}/{args.runs} ({' then '.join(order)})", file=sys.stderr)
        for tool in order:
            results[tool].append(measure_tool(ctx, tool, i, info))
    remove_runs(workdir / "runs")  # only now: see the module docstring
    files = sum(1 for e in entries if e[1] == "file")
    total = sum(e[2] for e in entries)
    rss_how = (
        "GNU /usr/bin/time -f %M (max RSS of the command or its largest descendant)"
        if GNU_TIME.exists()
        else "getrusage(RUSAGE_CHILDREN).ru_maxrss in a fresh wrapper process per command"
    )
    print(f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {ram_gib():.1f} GiB RAM,"
        f" {os_name()}, Linux {platform.release()}, Python {platform.python_version()}"
    )
    print(
        f"disk: {workdir} on {filesystem_of(workdir)}; dataset, repositories and restores all there"
    )
    print(f"tools: {info['drplan']}; {info['restic']}")
    print(f"repositories: drplan {info['drplan repository']}; restic {info['restic repository']}")
    print(f"CPUs: both tools see all {os.cpu_count()} cores (GOMAXPROCS unset)")
    print(
        f"dataset: {dataset} ({'reused' if reused else 'generated'}), scale {args.scale},"
        f" {files:,} files, {total:,} B ({total / MIB:,.1f} MiB)"
    )
    print(f"page cache dropped: {drop_note}")
    print(f"peak RSS: {rss_how}")
    print(f"runs: {args.runs}, tools alternating; medians shown")
    print("restores verified: yes, every (path, kind, size, SHA-256) equal to the dataset\n")
    print("\n".join(table(results)))
    if args.runs > 1:
        print("\nper run:\n")
        print("\n".join(raw_runs(results)))
    return 0


def bench_main(
    doc: str, prog: str, body: Callable[[argparse.Namespace], int], default_runs: int
) -> int:
    """The command line every dataset benchmark shares: --scale, --workdir, --runs."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="dataset scale (1.0 ~ 0.8 GB)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "drplan-bench",
        help="dataset, repositories, restores and copies go here (default: %(default)s)",
    )
    parser.add_argument(
        "--runs", type=int, default=default_runs, help="measurements per tool (median)"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.scale <= 0:
        parser.error("--runs must be at least 1 and --scale positive")
    try:
        return body(args)
    except BenchError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(bench_main(__doc__ or "", "files_bench", run, default_runs=1))
