"""The daemon's watches for ``on change`` jobs: what each job backs up, seen changing.

* a **files** system: its paths through inotify (``watchfiles``), a directory with
  everything under it, a file through its directory (an editor's save replaces the
  file: a watch on the old one would go quiet); changes to excluded paths are not
  changes;
* a **git** system: each local repository's refs (``refs/``, ``packed-refs``, ``HEAD``)
  through inotify, and every repository's refs read with ``git ls-remote`` (every
  ``poll`` for a URL, and after each inotify event for a local path): only refs that
  differ from those seen last are a change, so a fetch or a gc is not one.

A watched path that vanishes, or cannot be watched (an unreachable remote, the inotify
limit), is reported lost (logged, and recorded in the ledger, which ``drplan status``
shows); it is looked for every second and re-armed when it is back, and the time it was
lost counts as a change, since what happened meanwhile was not seen.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime

from drplan.plan.model import Plan
from drplan.scheduler.ledger import Ledger
from drplan.scheduler.triggers import CHANGE, DEFAULT_POLL, listens
from drplan.sources.files.excludes import Excludes
from drplan.storage.registry import redact

log = logging.getLogger("drplan.serve")

LOOK_EVERY = 1.0  # seconds between looks for a lost path, and the watch's timeout
REARM_AFTER_FAILURE = 5.0  # seconds before a watch that failed is tried again
LS_REMOTE_TIMEOUT = 60.0
# A modification whose ctime is older than this when the watch reports it was only a read:
# the watch reports within a second of the event; the margin is for a loaded host.
RECENT_CTIME = 10.0
GIT_REFS = ("HEAD", "packed-refs")  # besides everything under refs/
DAEMON = "drplan serve"  # the pseudo-path lost while no daemon watches


def watchable(plan: Plan) -> dict[str, str]:
    """The ``on change`` jobs of the plan, with their system's kind."""
    return {name: plan.systems[job.system].kind for name, job in plan.jobs.items()
            if listens(job) == CHANGE and job.system in plan.systems}  # fmt: skip


class Watches:
    """Every ``on change`` job's watch, each in a thread of its own, until ``stop``."""

    def __init__(
        self,
        ledger: Ledger,
        fire: Callable[[str, str, datetime], None],
        clock: Callable[[], datetime],
    ) -> None:
        self.ledger = ledger
        self.fire = fire  # (job, what changed, when): a change to back up
        self.clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lost: set[tuple[str, str]] = set()  # said once per loss

    def arm(self, plan: Plan) -> None:
        jobs = watchable(plan)
        # A loss recorded before this daemon began is one it inherits: re-armed, it ends.
        for name, entry in self.ledger.read().items():
            if name in jobs:
                self._lost.update((name, path) for path in entry.lost if path != DAEMON)
        for name, kind in jobs.items():
            job = plan.jobs[name]
            system = plan.systems[job.system]
            if kind == "files":
                paths = list(system.paths)  # type: ignore[union-attr]
                excludes = Excludes(list(system.exclude))  # type: ignore[union-attr]
                self._spawn(name, self._files, name, paths, excludes)
            elif kind == "git":
                poll = (job.poll or DEFAULT_POLL).total_seconds()
                for repository in system.repositories:  # type: ignore[union-attr]
                    self._spawn(name, self._git, name, repository, poll)
            else:
                log.warning("job %s: on change is not watched for a %s system; nothing runs it"
                            " (use `on EVENT` and `drplan trigger EVENT`)", name, kind)  # fmt: skip

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, job: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=self._guarded, args=(target, *args),
                                  name=f"drplan-watch-{job}", daemon=True)  # fmt: skip
        self._threads.append(thread)
        thread.start()

    def _guarded(self, target: Callable[..., None], *args: object) -> None:
        while not self._stop.is_set():
            try:
                target(*args)
                return
            except Exception:  # a bug must not end the watch silently: logged, tried again
                log.exception("a watch failed; it is armed again in %ds", REARM_AFTER_FAILURE)
                self._stop.wait(REARM_AFTER_FAILURE)

    # -- what is seen -------------------------------------------------------------------

    def _gone(self, job: str, path: str, reason: str) -> None:
        if (job, path) not in self._lost:
            self._lost.add((job, path))
            log.warning("job %s: the watch on %s is lost: %s; the job is at risk until it is"
                        " back", job, path, reason)  # fmt: skip
        self.ledger.lost(job, path, self.clock(), reason)

    def _back(self, job: str, path: str, *, a_change: bool = True) -> None:
        if (job, path) not in self._lost:
            return
        self._lost.discard((job, path))
        since = self.ledger.rearmed(job, path, a_change=a_change)
        log.info("job %s: the watch on %s is back", job, path)
        if since is not None:
            self.fire(
                job,
                f"the watch on {path} is back: what changed while it was lost was not seen",
                since,
            )

    # -- files ----------------------------------------------------------------------------

    def _files(self, job: str, paths: list[str], excludes: Excludes) -> None:
        from watchfiles import watch  # noqa: PLC0415 - only daemons with such jobs load it

        while not self._stop.is_set():
            present = [p for p in paths if os.path.lexists(p)]
            for path in set(paths) - set(present):
                self._gone(job, path, "it does not exist")
            if not present:
                self._stop.wait(LOOK_EVERY)
                continue
            roots = sorted({p if os.path.isdir(p) else os.path.dirname(p) or "/" for p in present})
            armed = False
            try:
                for batch in watch(*roots, stop_event=self._stop, yield_on_timeout=True,
                                   rust_timeout=int(LOOK_EVERY * 1000), debounce=200, step=50,
                                   watch_filter=None, raise_interrupt=False):  # fmt: skip
                    if not armed:
                        armed = True
                        for path in present:
                            self._back(job, path)
                    hits = [p for what, p in batch
                            if _covered(p, present, excludes) and not _read_only(what, p)]  # fmt: skip
                    if hits:
                        more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
                        self.fire(job, f"{min(hits)}{more}", self.clock())
                    if any(not os.path.lexists(p) for p in present) or any(
                        os.path.lexists(p) for p in paths if p not in present
                    ):
                        break  # a path vanished or came back: watch what is there now
            except RuntimeError as exc:
                if "decode path" not in str(exc):
                    raise _Unwatchable(str(exc)) from None
                # watchfiles cannot name a path that is not UTF-8 and ends the watch: it is
                # armed again at once, the change counted (the gap is that short).
                self.fire(job, "a file whose name is not UTF-8", self.clock())
            except (OSError, _Unwatchable) as exc:
                for path in present:
                    self._gone(job, path, f"it cannot be watched: {exc}")
                self._stop.wait(REARM_AFTER_FAILURE)

    # -- git ------------------------------------------------------------------------------

    def _git(self, job: str, repository: str, poll: float) -> None:
        if repository.startswith("/"):
            self._local_git(job, repository, poll)
            return
        while not self._stop.is_set():
            self._refs(job, repository)
            self._stop.wait(poll)

    def _local_git(self, job: str, repository: str, poll: float) -> None:
        from watchfiles import watch  # noqa: PLC0415

        while not self._stop.is_set():
            dot_git = os.path.join(repository, ".git")
            git_dir = dot_git if os.path.isdir(dot_git) else repository
            if not os.path.isdir(os.path.join(git_dir, "refs")):
                self._gone(job, repository, "it is not a git repository (any more)")
                self._stop.wait(LOOK_EVERY)
                continue
            try:
                self._refs(job, repository)
                looked = time.monotonic()
                for batch in watch(git_dir, stop_event=self._stop, yield_on_timeout=True,
                                   rust_timeout=int(LOOK_EVERY * 1000), debounce=200, step=50,
                                   watch_filter=None, raise_interrupt=False):  # fmt: skip
                    if not os.path.isdir(os.path.join(git_dir, "refs")):
                        break
                    moved = any(_is_ref(git_dir, p) for _, p in batch)
                    if moved or time.monotonic() - looked >= poll:
                        self._refs(job, repository)
                        looked = time.monotonic()
            except (OSError, RuntimeError) as exc:
                self._gone(job, repository, f"it cannot be watched: {exc}")
                self._stop.wait(REARM_AFTER_FAILURE)

    def _refs(self, job: str, repository: str) -> None:
        """Read the repository's refs; a change when they differ from those seen last."""
        try:
            done = subprocess.run(["git", "ls-remote", "--", repository], capture_output=True,
                                  timeout=LS_REMOTE_TIMEOUT, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._gone(job, redact(repository), f"git ls-remote failed: {type(exc).__name__}")
            return
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            self._gone(
                job, redact(repository), redact(lines[-1] if lines else "git ls-remote failed")
            )
            return
        self._back(job, redact(repository), a_change=False)  # the refs tell what happened meanwhile
        digest = hashlib.sha256(done.stdout).hexdigest()
        if self.ledger.seen_refs(job, redact(repository), digest):
            self.fire(job, f"new refs in {redact(repository)}", self.clock())


class _Unwatchable(Exception):
    """The watch failed for a reason it will not get over by itself (a limit, a mount)."""


def _read_only(what: object, path: str) -> bool:
    """Whether a modification is only a read updating the access time (inotify reports it
    as a change of metadata, watchfiles as a modification): the backup's own reads would
    otherwise trigger the next backup. A write or a chmod changes the ctime; a read does not."""
    from watchfiles import Change  # noqa: PLC0415

    if what is not Change.modified:
        return False
    try:
        changed = os.lstat(path).st_ctime
    except OSError:
        return False  # gone meanwhile: that is a change
    return changed < time.time() - RECENT_CTIME


def _covered(path: str, roots: list[str], excludes: Excludes) -> bool:
    """Whether a change at ``path`` is one to what ``roots`` back up, excludes left out."""
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            rest = path
            while rest and rest != root and len(rest) > 1:
                if excludes.excluded(os.fsencode(rest), os.fsencode(os.path.basename(rest))):
                    return False
                rest = os.path.dirname(rest)
            return True
    return False


def _is_ref(git_dir: str, path: str) -> bool:
    rel = os.path.relpath(path, git_dir)
    return not rel.endswith(".lock") and (rel in GIT_REFS or rel.startswith("refs" + os.sep))
