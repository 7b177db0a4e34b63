"""The state of every location of a plan: reachable, which repository, how far behind.

A location's lag is measured per job against the newest snapshot of that job in
any location: the time between that snapshot and the newest one here, and the
bytes this location would have to receive to hold every snapshot of the job that
its retention keeps and it lacks. A location that answers but holds no repository
is *lost* (destroyed, or never initialised); one that holds another repository is
*foreign*; one that cannot be reached is *unreachable*. Those three are *down*: the
location cannot be used, and its ``error`` says why in one line.

When no location opens with the password there is no key to tell a replica from a
foreign repository: each location is then only unreachable, lost (no repository), or
foreign (a repository the password does not open).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drplan import clock
from drplan.errors import DrplanError
from drplan.locations.copying import worth_copying
from drplan.repo.replication import blobs_of, same_repository
from drplan.repo.repository import CONFIG, Repository, pack_name
from drplan.repo.retention import Policy
from drplan.repo.snapshot import Snapshot
from drplan.storage import NotFound, Storage, StorageError

DOWN = ("unreachable", "lost", "foreign")
LOST = (
    "no repository here (destroyed, unmounted, or not seeded yet):"
    " seed it with `drplan copy`, not `repo init`"
)
NOTHING_ANYWHERE = (
    "no repository here, nor in any location of the plan: create one with"
    " `drplan repo init {name}`, then seed the others with `drplan copy`"
)


@dataclass
class JobLag:
    newest: datetime | None  # newest snapshot of the job here
    snapshots: int
    missing: int  # snapshots its retention keeps that are elsewhere but not here
    lag: timedelta | None  # newest anywhere minus newest here (None: never got one)
    bytes_behind: int | None  # stored bytes still to receive (None: not computable)


@dataclass
class LocationState:
    name: str
    url: str
    state: str  # ok, lagging, unreachable, lost, foreign
    error: str | None = None
    snapshots: int = 0
    jobs: dict[str, JobLag] = field(default_factory=dict)
    free_bytes: int | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "ok"

    @property
    def down(self) -> bool:
        """It cannot be used: unreachable, lost or foreign (lagging is not down)."""
        return self.state in DOWN


@dataclass
class _Opened:
    name: str
    storage: Storage
    repo: Repository | None = None
    snapshots: list[Snapshot] = field(default_factory=list)


def locations_status(
    reference: Repository | None,
    locations: Mapping[str, Callable[[], Storage]],
    jobs: Mapping[str, list[str]],
    policies: Callable[[str], dict[str | None, Policy]],
    now: datetime | None = None,
    failed: Mapping[str, DrplanError] | None = None,
) -> list[LocationState]:
    """The state of each of ``locations`` (name -> how to reach it), in their order.

    ``reference`` is any opened replica (it supplies the key), None when none opened;
    ``jobs`` maps each job to the locations it writes to: a location's lag counts only
    the jobs it serves. ``failed``: what opening a location has already raised; one that
    could not be reached is not tried again (an S3 endpoint that is down costs its
    retries once).
    """
    now = now or clock.now()
    failed = failed or {}
    opened: list[_Opened] = []
    states: dict[str, LocationState] = {}
    for name, reach in locations.items():
        try:
            storage = reach()
            states[name] = LocationState(name, storage.url, "ok")
            earlier = failed.get(name)
            if isinstance(earlier, StorageError) and not isinstance(earlier, NotFound):
                raise earlier
            same = _holds(storage) if reference is None else same_repository(reference, storage)
            if same is None:
                states[name].state = "lost"
                states[name].error = LOST
                continue
            if not same:
                states[name].state = "foreign"
                states[name].error = (
                    "holds a repository this password does not open, or a damaged one"
                    if reference is None
                    else "holds a different repository"
                )
                continue
            assert reference is not None  # _holds never says True
            repo = Repository(storage, reference.config, reference.key, reference.key_id)
            opened.append(_Opened(name, storage, repo, repo.snapshots()))
            states[name].snapshots = len(opened[-1].snapshots)
            states[name].free_bytes = storage.free_space()
        except DrplanError as exc:
            url = states[name].url if name in states else "?"
            states[name] = LocationState(name, url, "unreachable", _reason(exc, url))
    if reference is None and all(s.state == "lost" for s in states.values()):
        for state in states.values():  # a plan before its first `repo init`
            state.error = NOTHING_ANYWHERE.format(name=state.name)
    everything = {s.id: s for o in opened for s in o.snapshots}
    for o in opened:
        state = states[o.name]
        for job, served_by in jobs.items():
            if o.name in served_by:
                state.jobs[job] = _lag(o, job, everything, opened, policies(o.name))
        if any(lag.missing for lag in state.jobs.values()):
            state.state = "lagging"
    return [states[name] for name in locations]


def _holds(storage: Storage) -> bool | None:
    """None when ``storage`` holds no repository; False when it holds one (that did not
    open: without a reference, it cannot be called a replica)."""
    try:
        storage.stat(CONFIG)
    except NotFound:
        return None
    return False


def _reason(exc: DrplanError, url: str) -> str:
    """The error in one line, without the location's URL: its row shows that already."""
    return exc.message.removeprefix(f"{url}: ")


def _lag(
    here: _Opened,
    job: str,
    everything: dict[str, Snapshot],
    opened: list[_Opened],
    policies: dict[str | None, Policy],
) -> JobLag:
    mine = [s for s in here.snapshots if s.job == job]
    held = {s.id for s in mine}
    elsewhere = [s for s in everything.values() if s.job == job and s.id not in held]
    missing = worth_copying(elsewhere, mine, policies)
    newest_here = max((s.time for s in mine), default=None)
    newest = max((s.time for s in everything.values() if s.job == job), default=None)
    lag = None if newest_here is None else (newest - newest_here if newest else timedelta(0))
    return JobLag(newest_here, len(mine), len(missing), lag, _bytes_behind(here, missing, opened))


def _bytes_behind(here: _Opened, missing: list[Snapshot], opened: list[_Opened]) -> int | None:
    """Bytes a copy would send: the packs holding blobs the missing snapshots need that this
    location lacks (copies move whole packs)."""
    if not missing:
        return 0
    assert here.repo is not None
    try:
        here.repo.load_index()  # read-only, unlocked: status writes nothing anywhere
        packs: dict[str, Repository] = {}
        for snapshot in missing:
            source = next(o for o in opened if any(s.id == snapshot.id for s in o.snapshots))
            assert source.repo is not None
            if not source.repo.index.packs:
                source.repo.load_index()
            for blob_id in blobs_of(source.repo, [snapshot]):
                where = source.repo.index.lookup(blob_id)
                if blob_id not in here.repo.index.blobs and where is not None:
                    packs[where.pack.id] = source.repo
        return sum(repo.storage.stat(pack_name(p)).size for p, repo in packs.items())
    except DrplanError:
        return None
