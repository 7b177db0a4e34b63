"""The WAL agent: pushes WAL files into every WAL location, and fetches (ahead) for recovery.

Started by the quick commands of ``wal_spool`` when none runs, it opens the
repositories once (one key derivation), works through the spool several files at a
time, and exits after a while without work. It answers through markers that are
written only after the work is durable, so a crash at any moment leaves PostgreSQL
retrying, never believing a file archived that is not.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from drplan.errors import DrplanError
from drplan.sources.postgres.wal_archive import (
    CATCH_UP_LEVEL,
    DEFAULT_SEGMENT_SIZE,
    SEGMENT,
    WAL_LEVEL,
    WalArchive,
    segment_name,
    segment_number,
)
from drplan.sources.postgres.wal_spool import AGENT_ARGS, AGENT_STOP, mark
from drplan.storage import StorageError

IDLE_EXIT = 30.0  # seconds without work before the agent exits
POLL = 0.005  # seconds between looks at the spool while busy
PUSH_WORKERS = 3
# Files waiting beyond which pushing trades compression for speed until it catches up:
# WAL piling up in pg_wal can fill the server's disk, a larger archive cannot.
CATCH_UP_BACKLOG = 2 * PUSH_WORKERS
FETCH_WORKERS = 3
PREFETCH = 8  # segments fetched ahead of recovery


@dataclass(frozen=True)
class NamedArchive:
    location: str
    archive: WalArchive


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, DrplanError):
        return exc.message + (f"; {exc.hint}" if exc.hint else "")
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def push_file(archives: list[NamedArchive], name: str, data: bytes, level: int = WAL_LEVEL) -> None:
    """Store one WAL file in every location; the first failure, naming its location, raises."""
    for where in archives:
        try:
            where.archive.push(name, data, level)
        except (DrplanError, StorageError, OSError) as exc:
            failure = DrplanError(f"location {where.location}: {_error_text(exc)}")
            failure.exit_code = exc.exit_code if isinstance(exc, DrplanError) else 1
            raise failure from exc


def stop_requested(spool: str, plan: str | None) -> Callable[[], bool]:
    """Whether the agent should finish and exit: asked to (another command line needs the
    spool), or its plan changed (new locations must get the WAL that follows)."""

    def signature() -> tuple[int, int] | None:
        try:
            st = os.stat(plan) if plan else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st else None

    first = signature()
    return lambda: os.path.exists(os.path.join(spool, AGENT_STOP)) or signature() != first


def run_push_agent(
    archives: list[NamedArchive],
    spool: str,
    *,
    idle_exit: float = IDLE_EXIT,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Archive what PostgreSQL marked ready and what was asked, until idle for ``idle_exit``
    or ``should_stop`` says so (work under way is finished first)."""
    wal_dir = os.path.dirname(spool)
    status_dir = os.path.join(wal_dir, "archive_status")
    busy: dict[str, Future[None]] = {}
    # Answered by this agent: a .ready PostgreSQL has not renamed yet (it does so right
    # after archive_command returns) is not pushed again; a new request (.req) is.
    answered: set[str] = set()
    last_work = time.monotonic()
    try:  # the command line this agent was started for (see wal_spool.signature)
        with open(os.path.join(spool, AGENT_ARGS), encoding="utf-8") as f:
            serving = f.read()
    except FileNotFoundError:
        serving = ""

    def push_one(name: str, path: str, level: int) -> None:
        try:
            with open(path, "rb") as f:
                data = f.read()
            push_file(archives, name, data, level)
        except BaseException as exc:
            code = exc.exit_code if isinstance(exc, DrplanError) else 1
            mark(os.path.join(spool, name + ".error"), f"{code}\t{_error_text(exc)}")
        else:  # whose answer it is: only a call of that command line may take it
            mark(os.path.join(spool, name + ".ok"), serving)
        answered.add(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(spool, name + ".req"))

    def pending() -> dict[str, str]:
        todo: dict[str, str] = {}
        for ready in glob.glob(os.path.join(glob.escape(status_dir), "*.ready")):
            name = os.path.basename(ready)[: -len(".ready")]
            if name not in answered:
                todo[name] = os.path.join(wal_dir, name)
        for request in glob.glob(os.path.join(glob.escape(spool), "*.req")):
            name = os.path.basename(request)[: -len(".req")]
            waiting = any(
                os.path.exists(os.path.join(spool, name + suffix)) for suffix in (".ok", ".error")
            )
            if not waiting:  # else the caller has an answer to take
                with contextlib.suppress(FileNotFoundError), open(request, encoding="utf-8") as f:
                    todo[name] = f.read().strip() or os.path.join(wal_dir, name)
        return todo

    with ThreadPoolExecutor(PUSH_WORKERS, thread_name_prefix="drplan-wal-push") as pool:
        while True:
            for name in [n for n, f in busy.items() if f.done()]:
                del busy[name]
            if should_stop():
                wait(list(busy.values()))
                return
            todo = pending()
            level = CATCH_UP_LEVEL if len(todo) > CATCH_UP_BACKLOG else WAL_LEVEL
            for name, path in sorted(todo.items()):
                if name not in busy:
                    answered.discard(name)
                    busy[name] = pool.submit(push_one, name, path, level)
            if busy:
                last_work = time.monotonic()
                # Wake when a push ends (or for new requests): no busy polling while working.
                wait(list(busy.values()), timeout=0.05, return_when=FIRST_COMPLETED)
                continue
            if time.monotonic() - last_work > idle_exit:
                return
            time.sleep(POLL)


class _Fetcher:
    """Fetches what recovery asks for, and the segments after it before they are asked for."""

    def __init__(self, archives: list[NamedArchive], spool: str, prefetch: int, size: int) -> None:
        self.archives = archives
        self.spool = spool
        self.prefetch = prefetch
        self.size = size
        self.busy: dict[str, Future[None]] = {}
        self.handed: set[str] = set()  # fetched into the spool once: never again
        self.answered: set[str] = set()  # fetched because asked: the caller takes it
        self.listing: dict[str, list[NamedArchive]] = {}
        self.listed = 0.0

    def refresh(self) -> None:
        """Which location holds which file: one listing, so most fetches need one read."""
        self.listing.clear()
        for where in self.archives:
            with contextlib.suppress(DrplanError, StorageError, OSError):
                for wal in where.archive.files():
                    self.listing.setdefault(wal.file, []).append(where)
        self.listed = time.monotonic()

    def fetch_one(self, name: str, asked: bool) -> None:
        """Fetch into the spool. Only an asked-for file gets an answer marker (and its request
        removed): a read-ahead that fails is simply not there, and is fetched again, asked."""
        target = os.path.join(self.spool, name)
        try:
            data, failures = _fetch_anywhere(self.archives, self.listing.get(name), name)
            if data is None and not failures and name in self.listing:
                self.refresh()  # listed, then gone (a .partial replaced): look again
                data, failures = _fetch_anywhere(self.archives, self.listing.get(name), name)
            if data is not None:
                temp = f"{target}.{os.getpid()}.tmp"
                try:
                    with open(temp, "wb") as f:
                        f.write(data)
                    os.replace(temp, target)
                except OSError:  # a full pg_wal: the room goes back, for the answer too
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp)
                    raise
                if asked:
                    self.answered.add(name)
                if asked and not os.path.exists(target + ".req"):
                    # The caller had it from a read-ahead meanwhile and withdrew its request:
                    # this second copy would be a stale answer to a later, separate request.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(target)
            elif asked and failures:  # not where we could look; elsewhere unknown: no guess
                mark(target + ".error", "; ".join(failures))
            elif asked:
                mark(target + ".missing")
        except BaseException as exc:
            if asked:
                mark(target + ".error", _error_text(exc))
        finally:
            if asked:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target + ".req")

    def serve(self, pool: ThreadPoolExecutor, name: str) -> None:
        """Answer one request (once a read-ahead of the same file is over), and start
        fetching the segments that follow it."""
        if name in self.busy:
            return  # asked while read ahead: answered on a later round, from its result
        if os.path.exists(os.path.join(self.spool, name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.spool, name + ".req"))
            return
        if not os.path.exists(os.path.join(self.spool, name + ".req")):
            return  # answered by a read-ahead and withdrawn since the spool was listed
        if (
            SEGMENT.match(name)
            and name not in self.listing
            and time.monotonic() - self.listed > 1.0
        ):
            # Archived since the agent started (recovery of a live archive). Not for history
            # files: recovery probes for ones that never existed, and listing a large
            # archive for each would cost more than fetching straight away.
            self.refresh()
        self.handed.add(name)
        self.busy[name] = pool.submit(self.fetch_one, name, True)
        if not SEGMENT.match(name):
            return
        number = segment_number(name, self.size)
        timeline = int(name[:8], 16)
        for ahead in range(number + 1, number + 1 + self.prefetch):
            nxt = segment_name(timeline, ahead, self.size)
            if nxt in self.listing and nxt not in self.handed and nxt not in self.busy:
                self.handed.add(nxt)
                self.busy[nxt] = pool.submit(self.fetch_one, nxt, False)


def run_fetch_agent(
    archives: list[NamedArchive],
    spool: str,
    *,
    idle_exit: float = IDLE_EXIT,
    should_stop: Callable[[], bool] = lambda: False,
    prefetch: int = PREFETCH,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> None:
    """Serve recovery's requests until idle for ``idle_exit``, then clear the spool."""
    fetcher = _Fetcher(archives, spool, prefetch, segment_size)
    _clear_spool(spool, answers=True)  # answers of an earlier agent may be stale now
    fetcher.refresh()
    last_work = time.monotonic()
    with ThreadPoolExecutor(FETCH_WORKERS, thread_name_prefix="drplan-wal-fetch") as pool:
        while True:
            for name in [n for n, f in fetcher.busy.items() if f.done()]:
                del fetcher.busy[name]
            if not os.path.isdir(spool):  # its recovery is gone (a drill torn down, killed)
                return
            if should_stop():
                wait(list(fetcher.busy.values()))
                # What was fetched ahead goes; an answer stays: its caller may not have
                # taken it yet, and its request is gone.
                _clear_spool(spool, keep=fetcher.answered)
                return
            requests = sorted(
                os.path.basename(r)[: -len(".req")]
                for r in glob.glob(os.path.join(glob.escape(spool), "*.req"))
            )
            for name in requests:
                fetcher.serve(pool, name)
            if requests or fetcher.busy:
                last_work = time.monotonic()
            elif time.monotonic() - last_work > idle_exit:
                _clear_spool(spool)
                return
            time.sleep(POLL)


def _fetch_anywhere(
    archives: list[NamedArchive], holders: list[NamedArchive] | None, name: str
) -> tuple[bytes | None, list[str]]:
    """The file from the first location that has it; else None and the locations that
    could not be asked (a file missing from every reachable location may be in those)."""
    failures = []
    for where in holders or archives:
        try:
            data = where.archive.fetch(name)
        except (StorageError, OSError, DrplanError) as exc:  # unreachable or damaged here:
            failures.append(f"location {where.location}: {_error_text(exc)}")  # try the next
            continue
        if data is not None:
            return data, []
    return None, failures


def _clear_spool(spool: str, *, answers: bool = False, keep: Collection[str] = ()) -> None:
    """Files fetched ahead that recovery never asked for go (and, for a starting agent,
    answers nobody took); requests stay, and the spool itself stays for the lock."""
    for leftover in glob.glob(os.path.join(glob.escape(spool), "*")):
        base = os.path.basename(leftover)
        if base in keep:
            continue
        fetched = base.endswith(".tmp") or SEGMENT.match(base) or base.endswith(".history")
        if fetched or (answers and base.endswith((".missing", ".error"))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
