"""The quick side of ``drplan wal push`` and ``drplan wal fetch``: what PostgreSQL runs per file.

PostgreSQL runs ``archive_command`` once per WAL file, one after the other, and
``restore_command`` once per file it replays. Starting Python, reading the plan and
deriving the key (argon2id) for each would cap archiving at a few files per second,
so these commands only talk to a spool directory; a long-running agent (``drplan
wal agent``, started on demand, exiting when idle) holds the key and does the work,
ahead of PostgreSQL and several files at a time:

* push: the spool is ``drplan-archive/`` beside the file (in ``pg_wal``). The agent
  stores every file PostgreSQL marked ready (``archive_status/*.ready``) and every
  file asked for (``NAME.req``) in each WAL location, and only then writes
  ``NAME.ok``: archive_command succeeds when it finds its ``.ok``, so nothing is
  reported archived before it is durable everywhere. ``NAME.error`` carries a failure.
* fetch: the spool is ``drplan-prefetch/`` beside the target path (in ``pg_wal``, so
  handing a file over is a rename). The agent fetches what is asked and the next
  segments before they are asked for; ``NAME.missing`` says a file is not archived
  (recovery ends there), ``NAME.error`` that it is archived but cannot be read.

This module uses the standard library only: it runs on every call, before any of
drplan's heavier imports.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable

TYPE_CHECKING = False  # not typing's: importing typing alone costs ~20 ms per WAL file
if TYPE_CHECKING:
    from subprocess import Popen

PUSH_SPOOL = "drplan-archive"
FETCH_SPOOL = "drplan-prefetch"
AGENT_LOCK = "agent.lock"
AGENT_ERROR = "agent.error"
AGENT_LOG = "agent.log"
AGENT_ARGS = "agent.args"  # the command line of the agent last started here
AGENT_STOP = "agent.stop"  # asks the running agent to finish its work and exit
AGENT_PID = "agent.pid"  # the running agent's process id (for the shell script)
WAIT_SECONDS = 600.0  # for one file, while an agent is alive
AGENT_STARTS = 3  # agents started for one file before giving up
# restore_command exit codes: 1 = not archived (PostgreSQL ends recovery or looks
# elsewhere); above 125 = PostgreSQL aborts recovery instead of ending it early.
NOT_ARCHIVED = 1
ABORT_RECOVERY = 255  # errors.WAL_FETCH_ABORT (not imported: this module stays stdlib-only)


class WalCall:
    """A ``drplan [--plan F] wal push|fetch [options] ARGS`` command line, taken apart.

    A plain class: ``dataclasses`` alone would add ~25 ms (inspect, re, enum) to every
    call PostgreSQL makes."""

    __slots__ = ("action", "args", "global_args", "options")

    def __init__(
        self,
        action: str,
        global_args: list[str] | None = None,
        options: list[str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.action = action
        self.global_args = global_args or []
        self.options = options or []
        self.args = args or []


_VALUED = {"--system", "--repo", "--password-file"}


def parse(argv: list[str]) -> WalCall | None:
    """The call, when it is a plain push or fetch; None sends it to the full command line."""
    global_args: list[str] = []
    i = 0
    while i < len(argv) and argv[i] != "wal":
        if argv[i] == "--plan" and i + 1 < len(argv):
            global_args += argv[i : i + 2]
            i += 2
        elif argv[i].startswith("--plan=") or argv[i] == "--debug":
            global_args.append(argv[i])
            i += 1
        else:
            return None
    if i + 1 >= len(argv) or argv[i + 1] not in ("push", "fetch"):
        return None
    call = WalCall(argv[i + 1], global_args)
    rest = argv[i + 2 :]
    j = 0
    while j < len(rest):
        arg = rest[j]
        if arg in _VALUED and j + 1 < len(rest):
            call.options += rest[j : j + 2]
            j += 2
        elif arg.split("=", 1)[0] in _VALUED and "=" in arg:
            call.options.append(arg)
            j += 1
        elif arg.startswith("-"):
            return None  # --help and the like: the full command line answers
        else:
            call.args.append(arg)
            j += 1
    if len(call.args) != (1 if call.action == "push" else 2):
        return None
    return call


def run(call: WalCall) -> int:
    try:
        if call.action == "push":
            return _push(call)
        return _fetch(call)
    except OSError as exc:
        # The spool (beside the WAL file) could not be written: a full pg_wal, most often.
        name = os.path.basename(call.args[0])
        where = exc.filename or os.path.dirname(os.path.abspath(call.args[-1]))
        what, outcome = (
            ("archiving", "not archived; PostgreSQL tries again")
            if call.action == "push"
            else ("fetching", "recovery stops; start the server again once it is fixed")
        )
        _say(f"{what} {name} failed: {exc.strerror or exc}: {where} ({outcome})")
        return NOT_ARCHIVED if call.action == "push" else ABORT_RECOVERY


def _say(message: str) -> None:
    sys.stderr.write(f"drplan: {message}\n")


def _take(path: str) -> str | None:
    """Remove a marker and return what it says; None when there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
        os.unlink(path)
    except FileNotFoundError:
        return None
    return text


_HEX = frozenset("0123456789ABCDEF")


def wal_name(name: str) -> bool:
    """Whether ``name`` is a WAL file name as PostgreSQL passes %f: a segment (24 hex
    digits), its ``.partial``, a backup history file (``SEGMENT.XXXXXXXX.backup``) or a
    timeline history file (``XXXXXXXX.history``). Only such a name is joined to a spool
    path: ``../../x`` would move or create files anywhere. ``wal_archive.WAL_FILE``,
    without the cost of importing ``re`` on every call."""
    if len(name) == 16 and name.endswith(".history"):
        return _HEX.issuperset(name[:8])
    if len(name) < 24 or not _HEX.issuperset(name[:24]):
        return False
    rest = name[24:]
    if rest in ("", ".partial"):
        return True
    return (
        len(rest) == 16 and rest[0] == "." and _HEX.issuperset(rest[1:9]) and rest[9:] == ".backup"
    )


def _refuse(name: str) -> None:
    _say(
        f"{name!r} is not the name of a WAL file; pass %f (the file name) and %p (its path) as PostgreSQL does"
    )


def _push(call: WalCall) -> int:
    path = os.path.abspath(call.args[0])
    name = os.path.basename(path)
    if not wal_name(name):
        _refuse(name)
        return NOT_ARCHIVED
    spool = os.path.join(os.path.dirname(path), PUSH_SPOOL)
    marker = os.path.join(spool, name)
    # Archived ahead by an agent of this very command line: an agent of another one (the
    # system or the plan changed in archive_command) archived it somewhere else.
    if _take(marker + ".ok") == signature(call):
        return 0
    # A failure left from an earlier attempt (one whose caller gave up, or the agent's own
    # push of a .ready file) is no answer to this one: asked again, the agent tries again.
    _take(marker + ".error")
    os.makedirs(spool, exist_ok=True)

    def request() -> None:
        with open(marker + ".req", "w", encoding="utf-8") as f:
            f.write(path)

    outcome = _await(call, spool, marker, request)
    if outcome == "ok":
        return 0
    code, _, text = outcome.partition("\t")  # the agent's answer: "EXIT\tmessage"
    if not (text and code.isdigit()):
        code, text = str(NOT_ARCHIVED), outcome
    _say(f"archiving {name} failed: {text}")
    return int(code) or NOT_ARCHIVED


def _fetch(call: WalCall) -> int:
    name, target = call.args
    if not wal_name(name):
        _refuse(name)
        return NOT_ARCHIVED  # never archived under such a name
    target = os.path.abspath(target)
    spool = os.path.join(os.path.dirname(target), FETCH_SPOOL)
    marker = os.path.join(spool, name)
    for attempt in range(2):
        try:
            os.replace(marker, target)  # prefetched: the same file system, one rename
        except FileNotFoundError:
            pass
        else:
            if attempt:  # asked and answered: the request is withdrawn (see wal_agent)
                _take(marker + ".req")
            return 0
        if _take(marker + ".missing") is not None:
            return NOT_ARCHIVED
        if attempt == 0:
            os.makedirs(spool, exist_ok=True)

            def request() -> None:
                with open(marker + ".req", "w", encoding="utf-8"):
                    pass

            outcome = _await(call, spool, marker, request)
            if outcome not in ("ok", "missing"):
                _say(f"fetching {name} failed: {outcome}")
                return ABORT_RECOVERY
    return ABORT_RECOVERY


def signature(call: WalCall) -> str:
    """The command line an agent serves: only an agent of this one may answer a call."""
    return "\n".join([call.action, *call.global_args, *call.options])


def _await(call: WalCall, spool: str, marker: str, request: Callable[[], None]) -> str:
    """Ask (``request``) and wait for the agent's answer about one file: "ok", "missing",
    or why it failed."""
    ok = marker if call.action == "fetch" else marker + ".ok"
    wanted = signature(call)
    if _read(os.path.join(spool, AGENT_ARGS)) not in (None, wanted) and _agent_alive(spool):
        # An agent of another command line (the plan, system or password file changed in
        # archive_command) must not answer for this one: it is asked to go, and the
        # request made only once it has (it would take it up otherwise).
        mark(os.path.join(spool, AGENT_STOP))
        deadline = time.monotonic() + WAIT_SECONDS
        while _agent_alive(spool) and time.monotonic() < deadline:
            time.sleep(0.01)
    request()
    starts = 0
    started: Popen[bytes] | None = None  # started here: until it has the lock or exited
    deadline = time.monotonic() + WAIT_SECONDS
    pause = 0.001
    while time.monotonic() < deadline:
        if os.path.exists(ok):
            if call.action == "push":
                _take(ok)
            return "ok"
        if call.action == "fetch" and os.path.exists(marker + ".missing"):
            return "missing"
        error = _take(marker + ".error")
        if error is not None:
            return error
        if started is not None and started.poll() is None:
            pass  # still starting (or running): its lock may not be taken yet
        elif not _agent_alive(spool):
            failure = _take(os.path.join(spool, AGENT_ERROR))
            if failure is not None and started is not None:
                return failure  # from the agent this call started (an older one's is stale)
            if starts == AGENT_STARTS:
                return f"the WAL agent keeps exiting; see {os.path.join(spool, AGENT_LOG)}"
            _take(os.path.join(spool, AGENT_STOP))
            mark(os.path.join(spool, AGENT_ARGS), wanted)
            started = _start_agent(call, spool)
            starts += 1
            pause = 0.001
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return (
        f"no answer from the WAL agent in {WAIT_SECONDS:.0f}s; see {os.path.join(spool, AGENT_LOG)}"
    )


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _agent_alive(spool: str) -> bool:
    """Whether an agent holds the spool's lock (it does for as long as it runs)."""
    fd = os.open(os.path.join(spool, AGENT_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def _start_agent(call: WalCall, spool: str) -> Popen[bytes]:
    import subprocess  # noqa: PLC0415 - only when an agent must be started

    argv = [sys.executable, "-m", "drplan", *call.global_args, "wal", "agent", call.action]
    argv += [*call.options, "--spool", spool]
    with open(os.path.join(spool, AGENT_LOG), "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives this call; signals to PostgreSQL's group pass it by
            close_fds=True,
        )


def agent_lock(spool: str) -> int | None:
    """For the agent: take the spool's lock, held until the process exits; None when another
    agent holds it."""
    fd = os.open(os.path.join(spool, AGENT_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def mark(path: str, text: str = "") -> None:
    """Write a marker whole or not at all (a reader never sees half of one)."""
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temp, path)
