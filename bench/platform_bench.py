"""Platform state: images, git and etcd backed up by drplan against skopeo, git and etcdctl.

    python bench/platform_bench.py [--runs N] [--workdir DIR] [--scale S] [--only WHAT]

drplan runs through its CLI as a user runs it (``python -m drplan --plan PLAN backup
JOB --json``, restores likewise) into a local repository made by ``drplan repo init``
with its defaults; each peer is what people run by hand or from cron, measured in the
same run on the same servers (from ``testbed/``, all on 127.0.0.1):

* images: docker-registry with 5 images of 3 layers of 20 MiB (random, as gzip'd tars:
  incompressible), the first layer common to all five; backed up (first deployment),
  then one image gets a new tag with one new 8 MiB layer on top of its own, and backed
  up again. The peer copies each tag with ``skopeo copy docker://... oci:DIR:REPO:TAG``
  into one OCI directory, which keeps each blob once. Bytes read are the bodies of the
  registry's GET answers (its access log); bytes stored are drplan's
  ``summary.bytes_stored`` and the growth of the OCI directory. Restore: every image
  pushed into an empty registry, ``drplan restore images`` (which reads each digest back)
  against ``skopeo copy oci:DIR:REF docker://...`` per image.
* git: a repository of 20,000 commits made with ``git fast-import`` (3 files of 1 KiB of
  random hex each: about 45 MiB of pack), served by ``git daemon``; backed up, then 50
  more commits, backed up again. The peer: ``git clone --mirror`` (then ``git fetch
  --prune`` into the mirror) and ``git bundle create --all`` each time. Restore:
  ``drplan restore git --bare`` (``git fsck`` and every ref checked) against ``git clone
  --mirror`` of the last bundle.
* etcd: 100,000 keys of 1,000 bytes (hex text), written through etcd's JSON gateway;
  backed up, then 1% of the keys rewritten, backed up again. The peer: ``etcdctl
  snapshot save`` to a file each time. Restore: ``drplan restore etcd --data-dir``
  against ``etcdctl snapshot restore`` of the last file.

Each run starts every server and repository afresh and the tools take turns at going
first. As root, the page cache is dropped before each timed step (the servers' data and
both tools' programs are read from disk). ``--scale`` multiplies the sizes (layers,
commits, keys). Medians of N runs, with the smallest and largest.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from files_bench import (
    MIB,
    BenchError,
    Context,
    clean_env,
    command_output,
    cpu_model,
    disk_usage,
    drop_page_cache,
    os_name,
    probe_drop_caches,
    ram_gib,
    run_step,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed, beside bench/
from testbed import Unavailable
from testbed.etcd import Etcd, running_etcd
from testbed.gitserver import fast_import, hermetic_env, running_git_daemon
from testbed.plans import clean_plan
from testbed.registry import Registry, push_image, random_layer, running_registry

SCENARIOS = ("images", "git", "etcd")
PEERS = {"images": "skopeo", "git": "git", "etcd": "etcdctl"}
SKOPEO = "/usr/bin/skopeo"
NEEDED = {  # binary: Debian package
    SKOPEO: "skopeo", "/usr/bin/docker-registry": "docker-registry", "/usr/bin/git": "git",
    "/usr/bin/etcd": "etcd-server", "/usr/bin/etcdctl": "etcd-client",
}  # fmt: skip
DRPLAN = [sys.executable, "-m", "drplan"]
# The images: five services on one base layer, each with two layers of its own.
SERVICES = ("api", "web", "worker", "billing", "auth")
LAYER, NEW_LAYER = 20 * MIB, 8 * MIB
COMMITS, NEW_COMMITS = 20_000, 50
KEYS, VALUE, CHANGED = 100_000, 1000, 0.01
ACCESS = re.compile(r'"(GET|HEAD) (\S+) HTTP/[\d.]+" (\d{3}) (\d+|-)')


@dataclass
class Figures:
    """One tool's figures in one run of one scenario: seconds, bytes, peak RSS (KiB)."""

    values: dict[str, float] = field(default_factory=dict)


Run = dict[str, Figures]  # tool ("drplan" or the peer) -> its figures


# -- running things ----------------------------------------------------------------------------


def timed(
    ctx: Context, argvs: Sequence[Sequence[str]], cwd: Path, env: dict[str, str]
) -> tuple[float, int, str]:
    """Run commands one after the other as one timed step (the page cache dropped once,
    before the first, when allowed): wall seconds, the largest peak RSS, the last stdout."""
    if ctx.drop_caches:
        drop_page_cache()
    saved, ctx.env, ctx.drop_caches = (ctx.env, ctx.drop_caches), env, False
    try:
        steps = [run_step(ctx, argv, cwd=cwd) for argv in argvs]
    finally:
        ctx.env, ctx.drop_caches = saved
    return sum(s.seconds for s in steps), max(s.rss_kib for s in steps), steps[-1].stdout


class Drplan:
    """drplan through its CLI, on a plan of one system and one job backing it up to a
    local repository, with its state (the git cache among it) under ``base``."""

    def __init__(self, ctx: Context, base: Path, name: str, spec: dict[str, Any]) -> None:
        self.ctx, self.base, self.name = ctx, base, name
        plan = clean_plan()
        plan["objectives"]["rpo"] = {"configuration": "4h"}
        plan["data_classes"] = {}
        plan["systems"] = {name: {"tier": "critical", "data_classes": ["configuration"], **spec}}
        self.repo = base / "drplan-repo"
        plan["locations"] = {"local": {"role": "primary", "kind": "local", "path": str(self.repo)}}
        plan["jobs"] = {name: {"system": name, "type": spec["kind"], "schedule": "4h",
                               "retention": {"keep_within": "30d"}, "locations": ["local"]}}  # fmt: skip
        for key in ("scenarios", "runbooks", "drills"):
            plan.pop(key, None)
        self.plan = base / "plan.yaml"
        self.plan.write_text(yaml.safe_dump(plan))
        self.env = {**ctx.env, "DRPLAN_STATE_DIR": str(base / "drplan-state")}
        self.cli = [*DRPLAN, "--plan", str(self.plan)]
        run_step(self._ctx(), [*self.cli, "repo", "init", "local"], cwd=base, timed=False)

    def _ctx(self) -> Context:
        return Context(self.ctx.workdir, self.ctx.dataset, [], self.ctx.drop_caches, self.env)

    def backup(self, figures: Figures, step: str) -> dict[str, Any]:
        before = disk_usage(self.repo)[1]
        seconds, rss, out = timed(self.ctx, [[*self.cli, "backup", self.name, "--json"]],
                                  self.base, self.env)  # fmt: skip
        answer: dict[str, Any] = json.loads(out)
        figures.values[f"{step}_s"] = seconds
        figures.values[f"{step}_rss"] = rss
        figures.values[f"{step}_stored"] = answer["summary"]["bytes_stored"]
        figures.values[f"{step}_growth"] = disk_usage(self.repo)[1] - before
        return answer

    def restore(self, figures: Figures, kind: str, *args: str) -> dict[str, Any]:
        argv = [*self.cli, "restore", kind, self.name, *args, "--json"]
        seconds, _, out = timed(self.ctx, [argv], self.base, self.env)
        figures.values["restore_s"] = seconds
        answer: dict[str, Any] = json.loads(out)
        return answer


def in_turns(order: Sequence[str], steps: dict[str, Callable[[], None]]) -> None:
    for tool in order:
        steps[tool]()


# -- images ------------------------------------------------------------------------------------


@dataclass
class Layers:
    """The images' layers, made once (gzip'd random tars) and pushed afresh each run."""

    base: bytes
    own: dict[str, list[bytes]]
    new: bytes

    @classmethod
    def make(cls, scale: float) -> Layers:
        size = int(LAYER * scale)
        own = {
            s: [random_layer(size, 10 * (n + 1) + k) for k in (1, 2)]
            for n, s in enumerate(SERVICES)
        }
        return cls(random_layer(size, 1), own, random_layer(int(NEW_LAYER * scale), 99))


def registry_reads(registry: Registry, since: int) -> tuple[int, int]:
    """Bytes of the GET answers (blobs and manifests) in the access log after offset
    ``since``, and how many blobs and manifests were got."""
    text = registry.log.read_bytes()[since:].decode("utf-8", "replace")
    found = [(p, int(b)) for m, p, s, b in ACCESS.findall(text)
             if m == "GET" and s in ("200", "206") and b != "-"]  # fmt: skip
    return sum(b for _, b in found), sum(
        1 for p, _ in found if "/blobs/" in p or "/manifests/" in p
    )


def log_mark(registry: Registry) -> int:
    return registry.log.stat().st_size


def images_run(ctx: Context, root: Path, layers: Layers, order: Sequence[str]) -> Run:
    base = root / "images"
    base.mkdir()
    figures = {"drplan": Figures(), "skopeo": Figures()}
    refs = [f"platform/{s}:v1" for s in SERVICES]
    with running_registry(base / "source") as source:
        client = source.client()
        for service in SERVICES:
            push_image(client, f"platform/{service}", "v1", [layers.base, *layers.own[service]])
        spec = {"kind": "images", "registry": source.url,
                "images": [f"platform/{s}" for s in SERVICES]}  # fmt: skip
        drplan = Drplan(ctx, base, "registry", spec)
        oci = base / "skopeo-oci"
        skopeo_env = {**ctx.env, "HOME": str(base / "skopeo-home")}
        (base / "skopeo-home").mkdir()

        def backup(step: str, wanted: list[str]) -> None:
            def ours() -> None:
                mark = log_mark(source)
                answer = drplan.backup(figures["drplan"], step)
                if answer["source"]["partial"] or len(answer["source"]["images"]) != len(wanted):
                    raise BenchError(f"drplan backed up {list(answer['source']['images'])}")
                read, blobs = registry_reads(source, mark)
                if blobs != answer["source"]["blobs_downloaded"]:
                    raise BenchError(f"drplan: {blobs} blob and manifest GETs, it says"
                                     f" {answer['source']['blobs_downloaded']}")  # fmt: skip
                figures["drplan"].values[f"{step}_read"] = read

            def theirs() -> None:
                mark, before = log_mark(source), disk_usage(oci)[1] if oci.exists() else 0
                argvs = [[SKOPEO, "copy", "--quiet", "--src-tls-verify=false",
                          f"docker://{source.host}/{ref}", f"oci:{oci}:{ref}"] for ref in wanted]  # fmt: skip
                seconds, rss, _ = timed(ctx, argvs, base, skopeo_env)
                peer = figures["skopeo"].values
                peer[f"{step}_s"], peer[f"{step}_rss"] = seconds, rss
                peer[f"{step}_read"] = registry_reads(source, mark)[0]
                peer[f"{step}_stored"] = peer[f"{step}_growth"] = disk_usage(oci)[1] - before

            in_turns(order, {"drplan": ours, "skopeo": theirs})

        backup("first", refs)
        push_image(client, "platform/api", "v2",
                   [layers.base, *layers.own["api"], layers.new])  # fmt: skip
        refs.append("platform/api:v2")
        backup("second", refs)
        expected = {ref: client.manifest(*ref.split(":")).digest for ref in refs}
        images_restore(ctx, drplan, figures, oci, expected, order, skopeo_env)
    return figures


def images_restore(ctx: Context, drplan: Drplan, figures: Run, oci: Path, expected: dict[str, str],
                   order: Sequence[str], skopeo_env: dict[str, str]) -> None:  # fmt: skip
    """Every image backed up pushed into an empty registry, one per tool; the digests
    there held against the source's."""
    base, refs = drplan.base, list(expected)

    def restore_ours() -> None:
        with running_registry(base / "target-drplan") as target:
            answer = drplan.restore(figures["drplan"], "images", "--registry", target.url)
            got = {r: i["digest"] for r, i in answer["images"].items() if i["verified"]}
            if got != expected:
                raise BenchError(f"drplan restored {got}, not {expected}")

    def restore_theirs() -> None:
        with running_registry(base / "target-skopeo") as target:
            argvs = [[SKOPEO, "copy", "--quiet", "--dest-tls-verify=false", f"oci:{oci}:{ref}",
                      f"docker://{target.host}/{ref}"] for ref in refs]  # fmt: skip
            figures["skopeo"].values["restore_s"] = timed(ctx, argvs, base, skopeo_env)[0]
            pushed = target.client()
            got = {ref: pushed.manifest(*ref.split(":")).digest for ref in refs}
            if got != expected:
                raise BenchError(f"skopeo restored {got}, not {expected}")

    in_turns(order, {"drplan": restore_ours, "skopeo": restore_theirs})


# -- git ---------------------------------------------------------------------------------------


def refs_of(git_dir: Path) -> str:
    return command_output(["git", "--git-dir", str(git_dir), "for-each-ref",
                           "--format=%(objectname) %(refname)"], hermetic_env())  # fmt: skip


def git_run(ctx: Context, root: Path, scale: float, order: Sequence[str], seed: int) -> Run:
    base = root / "git"
    base.mkdir()
    figures = {"drplan": Figures(), "git": Figures()}
    name = "platform-config"
    commits = int(COMMITS * scale)
    with running_git_daemon(base / "served") as server:
        bare = server.create(name)
        fast_import(bare, commits=commits, size=1024, seed=seed)
        figures["git"].values["source_bytes"] = disk_usage(bare)[1]
        drplan = Drplan(ctx, base, "gitops", {"kind": "git", "repositories": [server.url(name)]})
        peer_dir = base / "git-peer"
        peer_dir.mkdir()
        mirror = peer_dir / f"{name}.git"
        env = hermetic_env()

        def backup(step: str) -> None:
            def ours() -> None:
                answer = drplan.backup(figures["drplan"], step)
                seen = answer["source"]["repositories"][name]
                figures["drplan"].values[f"{step}_objects"] = seen["new_objects"]

            def theirs() -> None:
                bundle = peer_dir / f"{step}.bundle"
                if mirror.exists():
                    fetch = [
                        "git",
                        "--git-dir",
                        str(mirror),
                        "fetch",
                        "--quiet",
                        "--prune",
                        "origin",
                    ]
                else:
                    fetch = ["git", "clone", "--quiet", "--mirror", server.url(name), str(mirror)]
                bundle_argv = ["git", "--git-dir", str(mirror), "bundle", "create", "--quiet",
                               str(bundle), "--all"]  # fmt: skip
                seconds, rss, _ = timed(ctx, [fetch, bundle_argv], peer_dir, env)
                peer = figures["git"].values
                peer[f"{step}_s"], peer[f"{step}_rss"] = seconds, rss
                peer[f"{step}_stored"] = peer[f"{step}_growth"] = bundle.stat().st_size

            in_turns(order, {"drplan": ours, "git": theirs})

        backup("first")
        fast_import(bare, commits=NEW_COMMITS, size=1024, seed=seed + 1, start=commits)
        backup("second")
        expected = refs_of(bare)

        def restore_ours() -> None:
            target = base / "restored-drplan"
            answer = drplan.restore(figures["drplan"], "git", "--bare", "--target", str(target))
            restored = answer["repositories"][name]
            if restored["fsck"] != "clean" or refs_of(Path(restored["path"])) != expected:
                raise BenchError(f"drplan's restore differs from the server: {restored}")

        def restore_theirs() -> None:
            target = base / "restored-git" / f"{name}.git"
            argv = ["git", "clone", "--quiet", "--mirror", str(peer_dir / "second.bundle"),
                    str(target)]  # fmt: skip
            figures["git"].values["restore_s"] = timed(ctx, [argv], base, env)[0]
            if refs_of(target) != expected:
                raise BenchError("the clone of the bundle differs from the server")

        in_turns(order, {"drplan": restore_ours, "git": restore_theirs})
    return figures


# -- etcd --------------------------------------------------------------------------------------


def put_keys(member: Etcd, items: Iterator[tuple[str, bytes]]) -> None:
    """Write keys through etcd's JSON gateway, 100 to a transaction (etcd allows 128)."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    batch: list[dict[str, Any]] = []
    for key, value in [*items, ("", b"")]:
        if key:
            batch.append({"requestPut": {"key": b64(key.encode()), "value": b64(value)}})
        if batch and (len(batch) == 100 or not key):
            request = urllib.request.Request(
                member.endpoint + "/v3/kv/txn", data=json.dumps({"success": batch}).encode(),
                method="POST", headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()
            batch = []


def key_name(n: int) -> str:
    return f"/registry/configmaps/ns-{n % 50:02d}/cm-{n:06d}"


def etcd_run(ctx: Context, root: Path, scale: float, order: Sequence[str], seed: int) -> Run:
    base = root / "etcd"
    base.mkdir()
    figures = {"drplan": Figures(), "etcdctl": Figures()}
    keys = int(KEYS * scale)
    rng = random.Random(seed)
    with running_etcd(base / "member") as member:
        put_keys(member, ((key_name(n), rng.randbytes(VALUE // 2).hex().encode())
                          for n in range(keys)))  # fmt: skip
        drplan = Drplan(ctx, base, "kubernetes", member.system())
        peer_dir = base / "etcdctl-peer"
        peer_dir.mkdir()
        env = {k: v for k, v in ctx.env.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
        env["ETCDCTL_API"] = "3"

        def backup(step: str) -> None:
            def ours() -> None:
                answer = drplan.backup(figures["drplan"], step)
                if answer["source"]["keys"] != keys:
                    raise BenchError(f"drplan counted {answer['source']['keys']} keys, not {keys}")

            def theirs() -> None:
                file = peer_dir / f"{step}.db"
                argv = ["etcdctl", f"--endpoints={member.endpoint}", "snapshot", "save", str(file)]
                seconds, rss, _ = timed(ctx, [argv], peer_dir, env)
                peer = figures["etcdctl"].values
                peer[f"{step}_s"], peer[f"{step}_rss"] = seconds, rss
                peer[f"{step}_stored"] = peer[f"{step}_growth"] = file.stat().st_size

            in_turns(order, {"drplan": ours, "etcdctl": theirs})

        backup("first")
        figures["etcdctl"].values["source_bytes"] = (peer_dir / "first.db").stat().st_size
        changed = rng.sample(range(keys), int(keys * CHANGED))
        put_keys(member, ((key_name(n), rng.randbytes(VALUE // 2).hex().encode())
                          for n in changed))  # fmt: skip
        backup("second")

    def restore_ours() -> None:
        answer = drplan.restore(
            figures["drplan"], "etcd", "--data-dir", str(base / "restored-drplan")
        )
        if not (base / "restored-drplan" / "member" / "snap" / "db").is_file():
            raise BenchError(f"drplan's restore made no member: {answer}")

    def restore_theirs() -> None:
        target = base / "restored-etcdctl"
        argv = ["etcdctl", "snapshot", "restore", str(peer_dir / "second.db"), "--data-dir",
                str(target)]  # fmt: skip
        figures["etcdctl"].values["restore_s"] = timed(ctx, [argv], peer_dir, env)[0]
        if not (target / "member" / "snap" / "db").is_file():
            raise BenchError("etcdctl's restore made no member")

    in_turns(order, {"drplan": restore_ours, "etcdctl": restore_theirs})
    return figures


# -- report ------------------------------------------------------------------------------------


def spread(values: list[float], show: Callable[[float], str]) -> str:
    if show(min(values)) == show(max(values)):
        return show(values[0])
    return f"{show(statistics.median(values))} ({show(min(values))}–{show(max(values))})"


def secs(x: float) -> str:
    return f"{x:.2f} s"


def mib(x: float) -> str:
    return f"{x / MIB:,.1f} MiB" if x >= MIB else f"{x / 1024:,.0f} KiB"


ROWS = {  # scenario -> (label, key, unit) per row
    "images": [
        ("first backup, wall", "first_s", secs),
        ("first backup, read from the registry", "first_read", mib),
        ("first backup, stored", "first_stored", mib),
        ("second backup, wall", "second_s", secs),
        ("second backup, read from the registry", "second_read", mib),
        ("second backup, stored", "second_stored", mib),
        ("restore into an empty registry, wall", "restore_s", secs),
        ("peak RSS, first backup", "first_rss", lambda k: mib(k * 1024)),
    ],
    "git": [
        ("first backup, wall", "first_s", secs),
        ("first backup, stored", "first_stored", mib),
        ("second backup (50 commits later), wall", "second_s", secs),
        ("second backup, stored", "second_stored", mib),
        ("restore (bare), wall", "restore_s", secs),
        ("peak RSS, first backup", "first_rss", lambda k: mib(k * 1024)),
    ],
    "etcd": [
        ("first backup, wall", "first_s", secs),
        ("first backup, stored", "first_stored", mib),
        ("second backup (1% of keys rewritten), wall", "second_s", secs),
        ("second backup, stored", "second_stored", mib),
        ("restore into a data directory, wall", "restore_s", secs),
        ("peak RSS, first backup", "first_rss", lambda k: mib(k * 1024)),
    ],
}
GROWTH = ("first_growth", "second_growth")


def table(results: dict[str, list[Run]]) -> list[str]:
    lines = ["| scenario | step | drplan | peer | peer is | ratio drplan/peer |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for scenario, runs in results.items():
        peer = PEERS[scenario]
        rows = list(ROWS[scenario])
        if scenario == "images":  # beside bytes_stored: what each added to its disk
            rows[3:3] = [("first backup, repository / OCI dir growth", "first_growth", mib)]
            rows[7:7] = [("second backup, repository / OCI dir growth", "second_growth", mib)]
        for label, key, show in rows:
            ours = [r["drplan"].values[key] for r in runs]
            theirs = [r[peer].values[key] for r in runs]
            ratio = statistics.median(ours) / statistics.median(theirs)
            lines.append(f"| {scenario} | {label} | {spread(ours, show)} |"
                         f" {spread(theirs, show)} | {peer} | {ratio:.{2 if ratio >= 0.1 else 3}f} |")  # fmt: skip
    return lines


def per_run(results: dict[str, list[Run]]) -> list[str]:
    lines = ["| scenario | run | tool | first | second | restore | stored first / second |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for scenario, runs in results.items():
        for i, run in enumerate(runs, 1):
            for tool, f in run.items():
                v = f.values
                lines.append(f"| {scenario} | {i} | {tool} | {secs(v['first_s'])} |"
                             f" {secs(v['second_s'])} | {secs(v['restore_s'])} |"
                             f" {mib(v['first_stored'])} / {mib(v['second_stored'])} |")  # fmt: skip
    return lines


def versions(env: dict[str, str], wanted: Sequence[str]) -> str:
    found = [command_output([*DRPLAN, "--version"], env)]
    if "images" in wanted:
        found.append(command_output([SKOPEO, "--version"], env))
        found.append("docker-registry " + command_output(["docker-registry", "--version"], env)
                     .split()[-1])  # fmt: skip
    if "git" in wanted:
        found.append(command_output(["git", "--version"], env))
    if "etcd" in wanted:
        found.append(command_output(["etcdctl", "version"], {**env, "ETCDCTL_API": "3"})
                     .splitlines()[0])  # fmt: skip
    return "; ".join(found)


# -- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    wanted = [s for s in SCENARIOS if s in args.only]
    missing = sorted({p for b, p in NEEDED.items() if not os.access(b, os.X_OK)})
    if missing:
        raise BenchError(f"needs {', '.join(missing)} (apt-get install -y {' '.join(missing)})")
    workdir: Path = args.workdir.resolve()
    root = workdir / "platform-runs"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    drop, drop_note = probe_drop_caches()
    ctx = Context(workdir, root, [], drop, clean_env())
    load_before = os.getloadavg()
    layers = Layers.make(args.scale) if "images" in wanted else None
    results: dict[str, list[Run]] = {s: [] for s in wanted}
    started = time.monotonic()
    for i in range(args.runs):
        order = ("drplan", "peer") if i % 2 == 0 else ("peer", "drplan")
        for scenario in wanted:
            tools = [t if t == "drplan" else PEERS[scenario] for t in order]
            print(f"run {i + 1}/{args.runs}: {scenario} ({' then '.join(tools)})",
                  file=sys.stderr, flush=True)  # fmt: skip
            base = root / f"run-{i}"
            base.mkdir(exist_ok=True)
            try:
                if scenario == "images" and layers is not None:
                    figures = images_run(ctx, base, layers, tools)
                elif scenario == "git":
                    figures = git_run(ctx, base, args.scale, tools, seed=100 + i)
                else:
                    figures = etcd_run(ctx, base, args.scale, tools, seed=200 + i)
            finally:
                shutil.rmtree(base / scenario, ignore_errors=True)
            results[scenario].append(figures)
            print("  " + "; ".join(f"{t}: " + ", ".join(f"{k}={v:.3g}" for k, v in f.values.items())
                                   for t, f in figures.items()), file=sys.stderr, flush=True)  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)
    minutes = (time.monotonic() - started) / 60
    report(args, ctx, wanted, results, drop_note, load_before, minutes)
    return 0


def report(args: argparse.Namespace, ctx: Context, wanted: list[str], results: dict[str, list[Run]],
           drop_note: str, load_before: tuple[float, float, float], minutes: float) -> None:  # fmt: skip
    load_after = os.getloadavg()
    print(f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {ram_gib():.1f} GiB RAM,"
          f" {os_name()}, Linux {platform.release()}, Python {platform.python_version()};"
          f" shared: load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")  # fmt: skip
    print(f"tools: {versions(ctx.env, wanted)}")
    s = args.scale
    if "images" in wanted:
        print(f"images: {len(SERVICES)} images of 3 random layers of {LAYER * s / MIB:.0f} MiB"
              f" (the first shared by all), then platform/api:v2 with a new"
              f" {NEW_LAYER * s / MIB:.0f} MiB layer; peer: skopeo copy per tag into one OCI dir")  # fmt: skip
    if "git" in wanted:
        source = statistics.median(r["git"].values["source_bytes"] for r in results["git"])
        print(f"git: {int(COMMITS * s):,} commits by fast-import ({source / MIB:.0f} MiB on the"
              f" server), then {NEW_COMMITS} more; peer: clone --mirror /"
              " fetch, then bundle create --all")  # fmt: skip
    if "etcd" in wanted:
        snap = statistics.median(r["etcdctl"].values["source_bytes"] for r in results["etcd"])
        print(f"etcd: {int(KEYS * s):,} keys of {VALUE} B ({snap / MIB:.0f} MiB snapshot), then"
              f" {CHANGED:.0%} rewritten; peer: etcdctl snapshot save to a file")  # fmt: skip
    print(f"page cache dropped: {drop_note}")
    print(f"runs: {args.runs}, fresh servers and repositories each, tools alternating;"
          f" median (min–max); {minutes:.1f} min in all\n")  # fmt: skip
    print("\n".join(table(results)))
    if args.runs > 1:
        print("\nper run:\n")
        print("\n".join(per_run(results)))


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="platform_bench", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each scenario (median)")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "drplan-bench",
        help="servers, repositories and restores go under DIR/platform-runs (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies layer sizes, commits and keys (default: %(default)s)")  # fmt: skip
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="scenarios to run, comma-separated (default: %(default)s)")  # fmt: skip
    args = parser.parse_args()
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if args.runs < 1 or args.scale <= 0 or not set(args.only) <= set(SCENARIOS) or not args.only:
        parser.error(f"--runs at least 1, --scale positive, --only among {','.join(SCENARIOS)}")
    try:
        return run(args)
    except (BenchError, Unavailable) as exc:
        print(f"platform_bench: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
