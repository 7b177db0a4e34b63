"""Copying a repository's snapshots to another location: drplan copy against restic copy.

    python bench/copy_bench.py [--runs N] [--workdir DIR] [--scale S]

Both tools first back up the file benchmark's dataset (``make_dataset.py``, see
files_bench.py) into a local source repository (untimed). Then, for each target, a
local directory on the same disk and a bucket of a SeaweedFS server on loopback,
each tool copies everything to an empty target (timed, page cache dropped first),
the source gets a second backup after a small change (untimed), and the tool copies
again (timed: an incremental copy, as after each scheduled backup).

restic's target is created with ``init --copy-chunker-params`` so it deduplicates
against the source, as its documentation advises for copies. drplan's target is
created by the copy itself (an empty location becomes a replica). drplan verifies
every copied object on the target (read back, or its checksum for archive classes);
restic does not read the target back. Medians of N runs, tools alternating.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from files_bench import (
    DRPLAN,
    MIB,
    PASSWORD,
    Context,
    Step,
    bench_main,
    clean_env,
    command_output,
    cpu_model,
    ensure_dataset,
    manifest,
    os_name,
    preflight,
    probe_drop_caches,
    ram_gib,
    run_step,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed: the S3 server
from testbed.seaweedfs import SeaweedFS, running_seaweedfs

TOOLS = ("drplan", "restic")
TARGETS = ("local", "s3")


@dataclass
class CopyRun:
    full: Step
    incremental: Step


def s3_env(env: dict[str, str], server: SeaweedFS) -> dict[str, str]:
    return {
        **env,
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": server.secret_access_key,
        "AWS_REGION": server.region,
        "AWS_DEFAULT_REGION": server.region,
    }


def target_ref(tool: str, target: str, place: Path, server: SeaweedFS, bucket: str) -> str:
    if target == "local":
        return str(place)
    if tool == "drplan":
        return f"s3://{bucket}/drplan"
    return f"s3:{server.endpoint_url}/{bucket}/restic"


def prepare_sources(ctx: Context, root: Path) -> dict[str, Path]:
    """A source repository per tool holding one backup of the dataset."""
    sources = {"drplan": root / "drplan-source", "restic": root / "restic-source"}
    run_step(ctx, [str(DRPLAN), "repo", "init", str(sources["drplan"])], cwd=root, timed=False)
    run_step(ctx, ["restic", "init", "--repo", str(sources["restic"])], cwd=root, timed=False)
    backup(ctx, "drplan", sources["drplan"], root)
    backup(ctx, "restic", sources["restic"], root)
    return sources


def backup(ctx: Context, tool: str, repo: Path, cwd: Path) -> None:
    if tool == "drplan":
        argv = [str(DRPLAN), "backup", "files", str(ctx.dataset), "--repo", str(repo)]
    else:
        argv = ["restic", "backup", str(ctx.dataset), "--repo", str(repo), "--quiet"]
    run_step(ctx, argv, cwd=cwd, timed=False)


def copy_argv(tool: str, source: Path, target: str) -> list[str]:
    if tool == "drplan":
        return [str(DRPLAN), "copy", "--from", str(source), "--to", target]
    return ["restic", "copy", "--from-repo", str(source), "--repo", target, "--quiet"]


@contextmanager
def changed_dataset(dataset: Path) -> Iterator[None]:
    """One new 4 MiB file for the second backup; removed afterwards."""
    extra = dataset / "bench-copy-increment.bin"
    extra.write_bytes(os.urandom(4 * MIB))
    try:
        yield
    finally:
        extra.unlink()


def measure(
    ctx: Context, tool: str, target: str, sources: dict[str, Path], server: SeaweedFS, run: int
) -> CopyRun:
    place = ctx.workdir / "copy-runs" / f"{tool}-{target}-{run}"
    place.mkdir(parents=True)
    bucket = server.create_bucket() if target == "s3" else ""
    ref = target_ref(tool, target, place / "repo", server, bucket)
    env = ctx.env
    ctx.env = s3_env(env, server) if target == "s3" else env
    try:
        if tool == "restic":
            init = ["restic", "init", "--repo", ref, "--from-repo", str(sources["restic"])]
            run_step(ctx, [*init, "--copy-chunker-params"], cwd=place, timed=False)
        full = run_step(ctx, copy_argv(tool, sources[tool], ref), cwd=place)
        with changed_dataset(ctx.dataset):
            backup(ctx, tool, sources[tool], place)
        incremental = run_step(ctx, copy_argv(tool, sources[tool], ref), cwd=place)
    finally:
        ctx.env = env
    return CopyRun(full, incremental)


def run(args: argparse.Namespace) -> int:
    preflight()
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    dataset, reused = ensure_dataset(workdir, args.scale)
    drop, drop_note = probe_drop_caches()
    ctx = Context(workdir, dataset, manifest(dataset), drop, clean_env())
    ctx.env["RESTIC_FROM_PASSWORD"] = PASSWORD
    shutil.rmtree(workdir / "copy-runs", ignore_errors=True)
    results: dict[tuple[str, str], list[CopyRun]] = {(t, g): [] for t in TOOLS for g in TARGETS}
    with (
        tempfile.TemporaryDirectory(dir=workdir) as s3_dir,
        running_seaweedfs(Path(s3_dir)) as weed,
    ):
        sources_root = workdir / "copy-runs" / "sources"
        sources_root.mkdir(parents=True)
        print("backing up the dataset into both sources ...", file=sys.stderr)
        sources = prepare_sources(ctx, sources_root)
        for i in range(args.runs):
            order = TOOLS if i % 2 == 0 else TOOLS[::-1]
            for target in TARGETS:
                for tool in order:
                    print(f"run {i + 1}/{args.runs}: {tool} copy to {target}", file=sys.stderr)
                    results[(tool, target)].append(measure(ctx, tool, target, sources, weed.s3, i))
    shutil.rmtree(workdir / "copy-runs")
    report(args, ctx, dataset, reused, drop_note, results)
    return 0


def report(
    args: argparse.Namespace,
    ctx: Context,
    dataset: Path,
    reused: bool,
    drop_note: str,
    results: dict[tuple[str, str], list[CopyRun]],
) -> None:
    total = sum(e[2] for e in ctx.manifest)
    print(f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {ram_gib():.1f} GiB RAM,"
        f" {os_name()}, Linux {platform.release()}, Python {platform.python_version()}"
    )
    print(
        f"tools: {command_output([str(DRPLAN), '--version'], ctx.env)}; "
        f"{command_output(['restic', 'version'], ctx.env)}"
    )
    print(f"dataset: {dataset} ({'reused' if reused else 'generated'}), {total / MIB:,.1f} MiB")
    print("targets: a directory on the same disk; a SeaweedFS bucket on 127.0.0.1 (`weed mini`)")
    print(f"page cache dropped: {drop_note}; runs: {args.runs}, tools alternating; medians\n")
    print("| target | step | drplan | restic | ratio drplan/restic |")
    print("|---|---|---|---|---|")
    for target in TARGETS:
        for step in ("full", "incremental"):
            ours = statistics.median(getattr(r, step).seconds for r in results[("drplan", target)])
            theirs = statistics.median(
                getattr(r, step).seconds for r in results[("restic", target)]
            )
            print(
                f"| {target} | {step} copy | {ours:.2f} s | {theirs:.2f} s | {ours / theirs:.2f} |"
            )
        ours_rss = statistics.median(r.full.rss_kib for r in results[("drplan", target)])
        theirs_rss = statistics.median(r.full.rss_kib for r in results[("restic", target)])
        print(
            f"| {target} | peak RSS, full copy | {ours_rss / 1024:.0f} MiB |"
            f" {theirs_rss / 1024:.0f} MiB | {ours_rss / theirs_rss:.2f} |"
        )


if __name__ == "__main__":
    sys.exit(bench_main(__doc__ or "", "copy_bench", run, default_runs=3))
