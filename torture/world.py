"""Where a trial runs: a work directory, an S3 server on loopback, repositories with a
fast key derivation, and the drplan command line run as a user runs it (a process of
its own, which a trial may kill with everything it started)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.seaweedfs import SeaweedFS, running_seaweedfs

PASSWORD = "torture password, not a secret"
DRPLAN = str(Path(sys.executable).with_name("drplan"))
INTERNAL_ERROR = 70
COMMAND_TIMEOUT = 600.0


class TrialFailed(Exception):
    """An invariant did not hold: the message says which, and what was seen."""


@dataclass
class Ran:
    argv: list[str]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def expect(self, *codes: int) -> Ran:
        if self.code not in codes:
            raise TrialFailed(
                f"`drplan {' '.join(self.argv)}` exited {self.code}, expected"
                f" {' or '.join(map(str, codes))}: {self.err.strip()[-400:]}"
            )
        return self


@dataclass
class World:
    root: Path
    s3: SeaweedFS | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DRPLAN_", "AWS_"))}
        self.env.update(
            DRPLAN_PASSWORD=PASSWORD,
            DRPLAN_STATE_DIR=str(self.root / "state"),
            DRPLAN_PROGRESS_INTERVAL="off",
            DRPLAN_S3_TIMEOUT="10",
            DRPLAN_S3_ATTEMPTS="4",
        )
        if self.s3 is not None:
            self.env.update(
                AWS_ENDPOINT_URL=self.s3.endpoint_url,
                AWS_ACCESS_KEY_ID=self.s3.access_key_id,
                AWS_SECRET_ACCESS_KEY=self.s3.secret_access_key,
                AWS_REGION=self.s3.region,
            )

    def drplan(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Ran:
        """Run drplan to its end. An internal error is a failure of the trial, whatever
        the command: no input, however hostile, may end in one."""
        proc = subprocess.run(
            [DRPLAN, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        ran = Ran(list(args), proc.returncode, proc.stdout, proc.stderr)
        if ran.code == INTERNAL_ERROR or "internal error" in ran.err:
            raise TrialFailed(f"internal error in `drplan {' '.join(args)}`: {ran.err.strip()}")
        return ran

    def together(self, *commands: list[str], stagger: float = 0.0) -> list[Ran]:
        """Run the commands at the same time (each ``stagger`` seconds after the last) and
        wait for all of them."""
        procs = []
        for i, args in enumerate(commands):
            if i and stagger:
                time.sleep(stagger)
            procs.append((args, subprocess.Popen(
                [DRPLAN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL, env=self.env, text=True,
            )))  # fmt: skip
        done = []
        for args, proc in procs:
            out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
            ran = Ran(list(args), proc.returncode, out, err)
            if ran.code == INTERNAL_ERROR or "internal error" in err:
                raise TrialFailed(f"internal error in `drplan {' '.join(args)}`: {err.strip()}")
            done.append(ran)
        return done

    def killed_at(
        self, delay: float, *args: str, env: dict[str, str] | None = None
    ) -> tuple[bool, Ran | None]:
        """Start drplan and kill its whole process group after ``delay`` seconds, unless it
        ends first: (killed, what it gave when it ended on its own)."""
        proc = subprocess.Popen(
            [DRPLAN, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env or self.env,
            text=True,
            start_new_session=True,  # its agents and children die with it, as in a crash
        )
        try:
            out, err = proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            _reap_group(proc.pid)
            return True, None
        ran = Ran(list(args), proc.returncode, out, err)
        if ran.code == INTERNAL_ERROR or "internal error" in err:
            raise TrialFailed(f"internal error in `drplan {' '.join(args)}`: {err.strip()}")
        return False, ran

    def local_repo(self, name: str) -> str:
        path = self.root / name
        self.drplan("repo", "init", str(path), "--kdf-memory", "1024", "--kdf-time", "1").expect(0)
        return str(path)

    def s3_repo(self) -> str:
        url = self.s3_empty()
        self.drplan("repo", "init", url, "--kdf-memory", "1024", "--kdf-time", "1").expect(0)
        return url

    def snapshots(self, repo: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            self.drplan("snapshots", "--repo", repo, "--json").expect(0).json()
        )
        return found

    def check(self, repo: str, read_data: bool = False) -> None:
        """The repository checks clean: garbage a crash left (info) is allowed, damage is not."""
        args = ["check", "--repo", repo, "--json"] + (["--read-data"] if read_data else [])
        ran = self.drplan(*args)
        if ran.code != 0:
            errors = [f["message"] for f in _findings(ran) if f.get("severity") == "error"]
            raise TrialFailed(f"check of {repo} failed ({ran.code}): {errors or ran.err.strip()}")

    def s3_replica_of(self, origin: str) -> str:
        """A new bucket seeded from ``origin`` as its replica: one repository, two
        locations, as a plan's locations are."""
        url = self.s3_empty()
        self.drplan("copy", "--from", origin, "--to", url).expect(0)
        return url

    def s3_empty(self) -> str:
        """A new bucket with nothing in it: a copy makes it a replica."""
        if self.s3 is None:
            raise TrialFailed("no S3 server in this world")
        return f"s3://{self.s3.create_bucket()}/repo"


def _findings(ran: Ran) -> list[dict[str, Any]]:
    try:
        found: list[dict[str, Any]] = ran.json().get("findings", [])
        return found
    except (ValueError, AttributeError):
        return []


def _reap_group(pgid: int) -> None:
    """Wait until nothing of the killed group is left (a WAL agent may outlive its push)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.01)


@contextlib.contextmanager
def world(root: Path, s3: bool = True) -> Iterator[World]:
    """A world under ``root``, with an S3 server when asked."""
    root.mkdir(parents=True, exist_ok=True)
    if not s3:
        yield World(root)
        return
    with running_seaweedfs(root / "seaweedfs") as server:
        yield World(root, server.s3)
