"""A real git server: ``git daemon`` on loopback, serving (and accepting pushes to) the bare
repositories under one directory.

``running_git_daemon(base)`` starts one and stops it on exit; :class:`GitServer` gives
repository URLs and creates bare repositories in its base. It is hermetic: 127.0.0.1
only, a port picked free, no system or user git configuration (HOME inside its own
directory).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed import Unavailable, free_port, stop

START_TIMEOUT = 10.0  # seconds for the daemon to accept connections
START_TRIES = 3  # a port picked free can be taken before the daemon binds it
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class GitServer:
    base: Path
    port: int

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def create(self, name: str, branch: str = "main") -> Path:
        """A new, empty bare repository ``name`` in the base; its path."""
        path = self.base / name
        subprocess.run(
            ["git", "init", "--quiet", "--bare", f"--initial-branch={branch}", str(path)],
            check=True, env=hermetic_env(),
        )  # fmt: skip
        return path


def hermetic_env() -> dict[str, str]:
    """No git configuration but what a command line gives (HOME leads nowhere); a fixed
    identity for commits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C",
        GIT_AUTHOR_NAME="drplan test", GIT_AUTHOR_EMAIL="test@drplan.invalid",
        GIT_COMMITTER_NAME="drplan test", GIT_COMMITTER_EMAIL="test@drplan.invalid",
        GIT_TERMINAL_PROMPT="0",
    )  # fmt: skip
    return env


def daemon_binary() -> Path:
    """git-daemon from git's exec path (Debian: /usr/lib/git-core, in the git package)."""
    try:
        exec_path = subprocess.run(
            ["git", "--exec-path"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        exec_path = "/usr/lib/git-core"
    for candidate in (Path(exec_path) / "git-daemon", Path("/usr/lib/git-core/git-daemon")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("git-daemon")
    if found is None:
        raise Unavailable(
            "`git daemon` is needed for the git tests and was not found in git's exec path: "
            "install git (Debian: apt-get install git; some distributions: git-daemon)"
        )
    return Path(found)


@contextlib.contextmanager
def running_git_daemon(base: Path) -> Iterator[GitServer]:
    """Serve the repositories under ``base`` on a free loopback port; stop on exit."""
    daemon = daemon_binary()
    base.mkdir(parents=True, exist_ok=True)
    problems = []
    for attempt in range(START_TRIES):
        port = free_port()
        log = base.parent / f"git-daemon-{attempt}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(daemon), "--listen=127.0.0.1", f"--port={port}", f"--base-path={base}",
                 "--export-all", "--enable=receive-pack", "--reuseaddr", "--informative-errors",
                 str(base)],
                env=hermetic_env(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=out,
            )  # fmt: skip
        try:
            _wait_until_listening(process, port, log)
        except _StartFailed as exc:
            stop(process, STOP_TIMEOUT)
            problems.append(str(exc))
            continue
        try:
            yield GitServer(base, port)
        finally:
            stop(process, STOP_TIMEOUT)
        return
    raise Unavailable("git daemon did not start:\n" + "\n".join(problems))


class _StartFailed(Exception):
    pass


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise _StartFailed(f"git daemon exited with {process.returncode}: {tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.02)
    raise _StartFailed(f"git daemon did not listen on port {port} within {START_TIMEOUT:.0f}s")


def fast_import(
    repository: Path, *, commits: int, files: int = 3, size: int = 2048, seed: int = 1,
    branch: str = "main", start: int = 0,
) -> None:  # fmt: skip
    """Add ``commits`` commits to ``branch`` of ``repository`` quickly (``git fast-import``),
    each rewriting ``files`` of its files with ``size`` bytes of fresh random text."""
    rng = random.Random(seed)
    tip = subprocess.run(
        ["git", "--git-dir", str(repository), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
        capture_output=True, text=True, check=False, env=hermetic_env(),
    ).stdout.strip()  # fmt: skip
    stream = bytearray()
    for n in range(start, start + commits):
        message = f"commit {n}\n".encode()
        stream += f"commit refs/heads/{branch}\n".encode()
        stream += (
            f"committer drplan test <test@drplan.invalid> {1_700_000_000 + n * 60} +0000\n".encode()
        )
        stream += f"data {len(message)}\n".encode() + message
        if n == start and tip:  # fast-import starts a branch afresh unless told its parent
            stream += f"from {tip}\n".encode()
        for _ in range(files):
            body = rng.randbytes(size // 2).hex().encode()
            path = f"dir{rng.randrange(10)}/file{rng.randrange(50)}.txt"
            stream += f"M 100644 inline {path}\ndata {len(body)}\n".encode() + body + b"\n"
        stream += b"\n"
    subprocess.run(
        ["git", "--git-dir", str(repository), "fast-import", "--quiet"], input=bytes(stream),
        check=True, env=hermetic_env(),
    )  # fmt: skip
