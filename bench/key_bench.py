"""Master-key rotation and re-encryption: drplan key rotate against restic's new repository.

    python bench/key_bench.py [--runs N] [--workdir DIR] [--scale S]

After a breach that may have exposed a repository's keys, drplan offers three ways to
new keys; restic has one. For each run and each target (a directory on the same disk,
and a bucket of a SeaweedFS server on loopback), both tools back up the file
benchmark's dataset (``make_dataset.py``, see files_bench.py) into a fresh repository
(untimed); then, with the page cache dropped before each timed command (as root):

- ``drplan key rotate --repo R`` (new master key, keyring and key file;
  ``$DRPLAN_NEW_PASSWORD``): no pack, index or snapshot is rewritten;
- ``drplan key rotate --repo R --reencrypt`` on the repository just rotated (another new
  password): every pack and object rewritten in place under the new data key, the old
  packs deleted and the old keys dropped;
- ``drplan copy --from R --to EMPTY --rekey`` (when ``drplan copy --help`` offers
  ``--rekey``): a new repository with new keys, blob-id key included;
- restic, which cannot change a repository's master key (``restic key passwd`` only
  re-wraps the same one; restic issues #320 and #1602): a new repository,
  ``restic init --repo NEW --from-repo OLD --copy-chunker-params`` then
  ``restic copy --from-repo OLD --repo NEW``, timed together (the restic column).

Each step's figures: wall seconds, peak RSS, and the bytes written to the target's
repository: the sizes of the objects that are new or changed after the step, from a
listing taken just before and just after it (a directory walk: size, inode and mtime;
on S3: size, ETag and date). Objects written and deleted within the step (lock files)
are not counted, and neither is restic's local cache.

Every result is checked before it counts, untimed: the latest snapshot restored and
compared file by file (path, size, SHA-256) with the dataset, after every drplan step
and of restic's new repository; ``drplan check --read-data`` after every drplan step; the
previous password refused after each rotation and by the re-keyed copy. A rotation
that changed any object outside keys/, keyring/, revoked/, audit/ and locks/, a
re-encryption that left any pack of before, and a re-keyed copy holding any pack, index
or snapshot name of its source all stop the benchmark.

Medians of N runs (with min and max); the tools take turns at going first; ratios are
drplan's figure over restic's in the same run and target, then the median of those.
borg 1.x is not measured: ``borg key change-passphrase`` re-wraps the same keys and
borg 1.x has no way to re-key a repository.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from copy_bench import s3_env
from files_bench import (
    DRPLAN,
    GIB,
    MIB,
    PASSWORD,
    BenchError,
    Context,
    Step,
    bench_main,
    clean_env,
    command_output,
    cpu_model,
    ensure_dataset,
    filesystem_of,
    manifest,
    os_name,
    preflight,
    probe_drop_caches,
    ram_gib,
    run_step,
    verify_restore,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed: the S3 server
from testbed.seaweedfs import SeaweedFS, running_seaweedfs

TARGETS = ("local", "s3")
# The passwords one run goes through: backup, rotate, re-encrypt, re-keyed copy.
DRPLAN_PASSWORDS = (PASSWORD, "rotated-1-not-a-secret", "rotated-2-not-a-secret", "rekeyed")
RESTIC_NEW_PASSWORD = "restic-new-not-a-secret"
# What a rotation without --reencrypt may write or delete; anything else is a failure.
ROTATION_PREFIXES = ("keys/", "keyring/", "revoked/", "audit/", "locks/")
# Objects whose names derive from the blob-id key or the content: a re-keyed copy shares none.
NAMED_BY_CONTENT = ("data/", "index/", "snapshots/")
REPO_RATIO = 0.7  # a repository's size over the dataset's (files_bench: about 0.65)

Listing = dict[str, tuple[int, str]]  # relative name -> (size, what changes when rewritten)


@dataclass(frozen=True)
class Location:
    """A repository's place: what the CLI is given, and how the bench lists it."""

    ref: str
    path: Path | None = None  # local
    bucket: str = ""  # S3
    prefix: str = ""


@dataclass
class Figures:
    """One timed step: wall, peak RSS, and what it left written in the repository."""

    seconds: float
    rss_kib: int
    written: int
    objects: int


@dataclass
class Run:
    """One run on one target: each step's figures and the repositories' sizes before."""

    order: str
    steps: dict[str, Figures]
    drplan_repo: int
    restic_repo: int
    restic_init: float


STEPS = {
    "rotate": "drplan key rotate",
    "reencrypt": "drplan key rotate --reencrypt",
    "rekey": "drplan copy --rekey (new repository)",
    "restic": "restic init --from-repo --copy-chunker-params + copy",
}


# -- listing what a step wrote -----------------------------------------------------------------


class Lister:
    """Lists a location's objects: a directory walk, or an S3 listing."""

    def __init__(self, server: SeaweedFS) -> None:
        self.client = server.client(max_attempts=3, timeout=60.0)

    def __call__(self, loc: Location) -> Listing:
        if loc.path is not None:
            return walk(loc.path)
        found: Listing = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=loc.bucket, Prefix=loc.prefix + "/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                name = obj["Key"][len(loc.prefix) + 1 :]
                found[name] = (obj["Size"], f"{obj['ETag']} {obj['LastModified'].isoformat()}")
        return found


def walk(root: Path) -> Listing:
    found: Listing = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            found[os.path.relpath(full, root)] = (st.st_size, f"{st.st_ino} {st.st_mtime_ns}")
    return found


def written(before: Listing, after: Listing) -> tuple[int, int]:
    """Bytes and objects that are new or changed in ``after``."""
    new = [size for name, (size, mark) in after.items() if before.get(name) != (size, mark)]
    return sum(new), len(new)


def changed_names(before: Listing, after: Listing) -> set[str]:
    """Names written, rewritten or deleted between the two listings."""
    return {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}


def total(listing: Listing) -> int:
    return sum(size for size, _mark in listing.values())


# -- the steps ---------------------------------------------------------------------------------


def with_env(ctx: Context, **variables: str) -> Context:
    return replace(ctx, env={**ctx.env, **variables})


def timed(
    ctx: Context, lister: Lister, loc: Location, argv: list[str], cwd: Path
) -> tuple[Step, Figures, Listing, Listing]:
    """Run one timed command; the listing of ``loc`` just before and just after it."""
    before = lister(loc)
    step = run_step(ctx, argv, cwd=cwd)
    after = lister(loc)
    size, count = written(before, after)
    return step, Figures(step.seconds, step.rss_kib, size, count), before, after


def verify_drplan(ctx: Context, loc: Location, cwd: Path, what: str, refused: str) -> None:
    """Untimed: the repository checks clean, restores the dataset, refuses the old password."""
    d = str(DRPLAN)
    run_step(ctx, [d, "check", "--read-data", "--repo", loc.ref], cwd=cwd, timed=False)
    target = cwd / "restore"
    run_step(
        ctx,
        [d, "restore", "latest", "--target", str(target), "--repo", loc.ref],
        cwd=cwd,
        timed=False,
    )
    verify_restore(ctx, f"drplan after {what}", target)
    shutil.rmtree(target)
    proc = subprocess.run(
        [d, "snapshots", "--repo", loc.ref],
        env={**ctx.env, "DRPLAN_PASSWORD": refused},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        raise BenchError(f"drplan after {what}: the previous password still opens {loc.ref}")


def reported_error(report: Any) -> bool:
    """Whether any location in a JSON report names an error or damage."""
    if isinstance(report, dict):
        if report.get("error") or report.get("damaged"):
            return True
        return any(reported_error(v) for v in report.values())
    if isinstance(report, list):
        return any(reported_error(v) for v in report)
    return False


def drplan_steps(
    ctx: Context, lister: Lister, src: Location, rekeyed: Location | None, cwd: Path
) -> dict[str, Figures]:
    """Rotate, re-encrypt, then (if offered) copy --rekey; each verified before the next."""
    d = str(DRPLAN)
    p0, p1, p2, p3 = DRPLAN_PASSWORDS
    figures: dict[str, Figures] = {}

    print("    drplan key rotate ...", file=sys.stderr)
    env = with_env(ctx, DRPLAN_PASSWORD=p0, DRPLAN_NEW_PASSWORD=p1)
    argv = [d, "key", "rotate", "--repo", src.ref, "--json"]
    step, figures["rotate"], before, after = timed(env, lister, src, argv, cwd)
    if reported_error(json.loads(step.stdout)):
        raise BenchError(f"drplan key rotate reported a failure:\n{step.stdout}")
    outside = sorted(n for n in changed_names(before, after) if not n.startswith(ROTATION_PREFIXES))
    if outside:
        raise BenchError(f"drplan key rotate changed objects it must not touch: {outside[:5]}")
    verify_drplan(with_env(ctx, DRPLAN_PASSWORD=p1), src, cwd, "key rotate", p0)

    print("    drplan key rotate --reencrypt ...", file=sys.stderr)
    env = with_env(ctx, DRPLAN_PASSWORD=p1, DRPLAN_NEW_PASSWORD=p2)
    argv = [d, "key", "rotate", "--repo", src.ref, "--reencrypt", "--json"]
    step, figures["reencrypt"], before, after = timed(env, lister, src, argv, cwd)
    report = json.loads(step.stdout)
    if reported_error(report) or not report.get("old_keys_dropped"):
        raise BenchError(f"drplan key rotate --reencrypt did not finish:\n{step.stdout}")
    packs_before = {n for n in before if n.startswith("data/")}
    kept = sorted(packs_before & after.keys())
    if kept or not any(n.startswith("data/") for n in after):
        raise BenchError(f"drplan key rotate --reencrypt left packs of before: {kept[:5]}")
    reported = sum(r["bytes_written"] for r in report["reencrypted"])
    if figures["reencrypt"].written < reported:
        raise BenchError(
            f"the listing shows {figures['reencrypt'].written} B written, drplan {reported} B"
        )
    verify_drplan(with_env(ctx, DRPLAN_PASSWORD=p2), src, cwd, "key rotate --reencrypt", p1)

    if rekeyed is not None:
        print("    drplan copy --rekey ...", file=sys.stderr)
        env = with_env(ctx, DRPLAN_PASSWORD=p2, DRPLAN_NEW_PASSWORD=p3)
        argv = [d, "copy", "--from", src.ref, "--to", rekeyed.ref, "--rekey", "--json"]
        step, figures["rekey"], _before, after = timed(env, lister, rekeyed, argv, cwd)
        if reported_error(json.loads(step.stdout)):
            raise BenchError(f"drplan copy --rekey reported a failure:\n{step.stdout}")
        source = lister(src)
        shared = sorted(n for n in after.keys() & source.keys() if n.startswith(NAMED_BY_CONTENT))
        if shared:
            raise BenchError(f"drplan copy --rekey kept names of its source: {shared[:5]}")
        verify_drplan(with_env(ctx, DRPLAN_PASSWORD=p3), rekeyed, cwd, "copy --rekey", p2)
    return figures


def restic_step(
    ctx: Context, lister: Lister, src: Location, new: Location, cwd: Path
) -> tuple[Figures, float]:
    """init --from-repo --copy-chunker-params, then copy: timed together; then verified."""
    print("    restic init --from-repo + copy ...", file=sys.stderr)
    env = with_env(ctx, RESTIC_FROM_PASSWORD=PASSWORD, RESTIC_PASSWORD=RESTIC_NEW_PASSWORD)
    before = lister(new)
    init = run_step(
        env,
        ["restic", "init", "--repo", new.ref, "--from-repo", src.ref, "--copy-chunker-params"],
        cwd=cwd,
    )
    copy = run_step(env, ["restic", "copy", "--from-repo", src.ref, "--repo", new.ref], cwd=cwd)
    size, count = written(before, lister(new))
    figures = Figures(init.seconds + copy.seconds, max(init.rss_kib, copy.rss_kib), size, count)
    target = cwd / "restore"
    argv = ["restic", "restore", "latest", "--repo", new.ref, "--target", str(target)]
    run_step(env, argv, cwd=cwd, timed=False)
    verify_restore(ctx, "restic's new repository", target)
    shutil.rmtree(target)
    return figures, init.seconds


def backups(ctx: Context, drplan_repo: Location, restic_repo: Location, cwd: Path) -> None:
    """A fresh repository per tool holding one backup of the dataset (untimed)."""
    d, data = str(DRPLAN), str(ctx.dataset)
    for argv in (
        [d, "repo", "init", drplan_repo.ref],
        [d, "backup", "files", data, "--repo", drplan_repo.ref],
        ["restic", "init", "--repo", restic_repo.ref, "--quiet"],
        ["restic", "backup", data, "--repo", restic_repo.ref, "--quiet"],
    ):
        run_step(ctx, argv, cwd=cwd, timed=False)


def locations(target: str, place: Path, server: SeaweedFS) -> dict[str, Location]:
    names = ("drplan", "drplan-rekeyed", "restic", "restic-new")
    if target == "local":
        return {n: Location(str(place / n), path=place / n) for n in names}
    bucket = server.create_bucket()
    return {
        "drplan": Location(f"s3://{bucket}/drplan", bucket=bucket, prefix="drplan"),
        "drplan-rekeyed": Location(
            f"s3://{bucket}/drplan-rekeyed", bucket=bucket, prefix="drplan-rekeyed"
        ),
        "restic": Location(
            f"s3:{server.endpoint_url}/{bucket}/restic", bucket=bucket, prefix="restic"
        ),
        "restic-new": Location(
            f"s3:{server.endpoint_url}/{bucket}/restic-new", bucket=bucket, prefix="restic-new"
        ),
    }


def measure(
    ctx: Context, lister: Lister, target: str, server: SeaweedFS, run: int, rekey: bool
) -> Run:
    place = ctx.workdir / "key-runs" / f"{target}-{run}"
    place.mkdir(parents=True)
    locs = locations(target, place, server)
    ctx = with_env(ctx, RESTIC_CACHE_DIR=str(place / "restic-cache"))
    if target == "s3":
        ctx = replace(ctx, env=s3_env(ctx.env, server))
    print(f"  {target}: both backups (untimed) ...", file=sys.stderr)
    backups(ctx, locs["drplan"], locs["restic"], place)
    drplan_size, restic_size = total(lister(locs["drplan"])), total(lister(locs["restic"]))
    steps: dict[str, Figures] = {}
    restic_init = 0.0

    def ours() -> None:
        rekeyed = locs["drplan-rekeyed"] if rekey else None
        steps.update(drplan_steps(ctx, lister, locs["drplan"], rekeyed, place))

    def theirs() -> None:
        nonlocal restic_init
        steps["restic"], restic_init = restic_step(
            ctx, lister, locs["restic"], locs["restic-new"], place
        )

    order = ("drplan", "restic") if run % 2 == 0 else ("restic", "drplan")
    for tool in order:
        (ours if tool == "drplan" else theirs)()
    shutil.rmtree(place)  # the local repositories; no timed step creates many files after
    return Run(" then ".join(order), steps, drplan_size, restic_size, restic_init)


# -- report ------------------------------------------------------------------------------------


def secs(x: float) -> str:
    return f"{x:.2f} s"


def size(x: float) -> str:
    if x < 10 * 1024:
        return f"{x:,.0f} B"
    if x < 10 * MIB:
        return f"{x / 1024:,.1f} KiB"
    return f"{x / MIB:,.1f} MiB"


def count(x: float) -> str:
    return f"{x:,.0f}"


def ratio(x: float) -> str:
    return f"{x:.2f}" if x >= 0.01 else f"{x:.1e}"


def spread(values: Iterable[float], show: Callable[[float], str]) -> str:
    v = list(values)
    low, mid, high = show(min(v)), show(statistics.median(v)), show(max(v))
    return mid if low == high else f"{mid} ({low}–{high})"


def table(results: dict[str, list[Run]], steps: list[str]) -> list[str]:
    lines = [
        "| target | step | wall | written to the repository | objects written | peak RSS"
        " | wall ÷ restic's | written ÷ restic's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for target in TARGETS:
        runs = results[target]
        for step in steps:
            figs = [r.steps[step] for r in runs]
            pairs = [(r.steps[step], r.steps["restic"]) for r in runs]
            if step == "restic":
                wall_ratio = written_ratio = "1"
            else:
                wall_ratio = spread((f.seconds / b.seconds for f, b in pairs), ratio)
                written_ratio = spread((f.written / b.written for f, b in pairs), ratio)
            lines.append(
                f"| {target} | {STEPS[step]} | {spread((f.seconds for f in figs), secs)}"
                f" | {spread((f.written for f in figs), size)}"
                f" | {spread((f.objects for f in figs), count)}"
                f" | {spread((f.rss_kib * 1024 for f in figs), size)}"
                f" | {wall_ratio} | {written_ratio} |"
            )
    return lines


def raw_runs(results: dict[str, list[Run]], steps: list[str]) -> list[str]:
    short = {"rotate": "rotate", "reencrypt": "--reencrypt", "rekey": "copy --rekey"}
    heads = [short.get(s, "restic init + copy") for s in steps]
    lines = [
        "| run | target | order | " + " | ".join(heads) + " | of which restic init"
        " | repositories before (drplan / restic) |",
        "|" + "---|" * (len(steps) + 5),
    ]
    for target in TARGETS:
        for i, r in enumerate(results[target], 1):
            cells = [f"{secs(r.steps[s].seconds)}, {size(r.steps[s].written)}" for s in steps]
            lines.append(
                f"| {i} | {target} | {r.order} | " + " | ".join(cells) + f" | {secs(r.restic_init)}"
                f" | {size(r.drplan_repo)} / {size(r.restic_repo)} |"
            )
    return lines


def rekey_offered(env: dict[str, str]) -> bool:
    return "--rekey" in command_output([str(DRPLAN), "copy", "--help"], env)


def check_free_space(workdir: Path, scale: float, runs: int) -> None:
    """The dataset, a restore, and every run's S3 repositories (weed keeps deleted space)."""
    repo = REPO_RATIO * scale * GIB
    need = runs * 4 * repo + 4 * repo + 2.5 * scale * GIB + 0.5 * GIB
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise BenchError(
            f"{workdir} has {free / GIB:.1f} GiB free; this run needs about {need / GIB:.1f} GiB"
            " (choose another --workdir or a smaller --scale)"
        )


def run(args: argparse.Namespace) -> int:
    preflight()
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    check_free_space(workdir, args.scale, args.runs)
    dataset, reused = ensure_dataset(workdir, args.scale)
    print("hashing the dataset ...", file=sys.stderr)
    drop, drop_note = probe_drop_caches()
    ctx = Context(workdir, dataset, manifest(dataset), drop, clean_env())
    rekey = rekey_offered(ctx.env)
    steps = ["rotate", "reencrypt", *(["rekey"] if rekey else []), "restic"]
    shutil.rmtree(workdir / "key-runs", ignore_errors=True)
    results: dict[str, list[Run]] = {t: [] for t in TARGETS}
    load_before = os.getloadavg()
    start = dt.datetime.now(dt.UTC)
    with (
        tempfile.TemporaryDirectory(dir=workdir) as s3_dir,
        running_seaweedfs(Path(s3_dir)) as weed,
    ):
        lister = Lister(weed.s3)
        for i in range(args.runs):
            for target in TARGETS:
                print(f"run {i + 1}/{args.runs}, {target}", file=sys.stderr)
                results[target].append(measure(ctx, lister, target, weed.s3, i, rekey))
    shutil.rmtree(workdir / "key-runs", ignore_errors=True)
    minutes = (dt.datetime.now(dt.UTC) - start).total_seconds() / 60
    load_after = os.getloadavg()
    files = sum(1 for e in ctx.manifest if e[1] == "file")
    data_bytes = sum(e[2] for e in ctx.manifest)
    print(f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {ram_gib():.1f} GiB RAM,"
        f" {os_name()}, Linux {platform.release()}, Python {platform.python_version()};"
        f" load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"disk: {workdir} on {filesystem_of(workdir)}; dataset, repositories and S3 data there")
    print(
        f"tools: {command_output([str(DRPLAN), '--version'], ctx.env)}; "
        f"{command_output(['restic', 'version'], ctx.env)}"
    )
    print(
        f"dataset: {dataset} ({'reused' if reused else 'generated'}), scale {args.scale},"
        f" {files:,} files, {data_bytes / MIB:,.1f} MiB; one backup per repository"
    )
    print("targets: a directory on the same disk; a SeaweedFS bucket on 127.0.0.1 (`weed mini`)")
    print(f"page cache dropped: {drop_note}")
    if not rekey:
        print("drplan copy --rekey: not measured (`drplan copy --help` does not offer --rekey)")
    print(
        "verified, untimed: after each drplan step check --read-data, a restore equal to the"
        " dataset, the previous password refused; restic's new repository restored equal too"
    )
    print(
        f"runs: {args.runs}, tools alternating; median (min–max); ratios per run and target,"
        f" then their median; {minutes:.1f} min in all\n"
    )
    print("\n".join(table(results, steps)))
    print("\nper run (wall, written):\n")
    print("\n".join(raw_runs(results, steps)))
    return 0


if __name__ == "__main__":
    sys.exit(bench_main(__doc__ or "", "key_bench", run, default_runs=3))
