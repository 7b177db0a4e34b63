"""Driving an incident's runbook: its automated steps run in order until the next step
that waits for a person (a manual step, an approval, a failure to decide on).

Each automated step is recorded as started (with its process, once it runs) before it
can do anything, and with its outcome when it ends. So a driver killed mid-step leaves a
step started and never finished; the next driver sees its process gone and never runs
it again silently: the step's ``rerun`` decides (``safe``: again, on its own; ``ask``:
the commander retries it, or records it by hand). One driver at a time per incident: a
lock beside its journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drplan import clock
from drplan.errors import DrplanError
from drplan.incidents.execute import argv_of, execute
from drplan.incidents.service import Incidents
from drplan.incidents.state import FAILED, Incident, StepState
from drplan.incidents.view import summary
from drplan.liveness import alive

if TYPE_CHECKING:
    from drplan.plan.model import Plan

DEFAULT_TIMEOUT = 3600.0  # seconds, for a step without its own `timeout`
DRIVER = "drplan"  # the actor of what the driver records
WATCH_EVERY = 5.0  # seconds between escalation checks while a step runs


@dataclass(frozen=True)
class Halt:
    """Why driving stopped: the step it waits on and what a person does next."""

    reason: str  # finished, manual, approval, failed, interrupted, running
    step: str | None
    message: str


@dataclass
class Driver:
    service: Incidents
    now: Callable[[], datetime] = clock.now
    host: str = socket.gethostname()
    on_event: Callable[[str], None] | None = None  # told each step started and ended
    stopping: threading.Event | None = None  # once set, a running step is left to run on
    _plans: dict[str, Plan] = field(default_factory=dict)  # per incident, as declared
    _watched: float = 0.0  # when the escalations were last checked (monotonic)

    def drive(self, incident_id: str, retry: str | None = None) -> Halt:
        """Run automated steps until one waits for a person; ``retry``: a failed or
        interrupted step to run again (the commander's decision)."""
        incident = self.service.load(incident_id)
        incident.writable()
        if retry is not None:
            retry = incident.step(retry).id
        # A step starts before anything the driver can do meanwhile (the plan's model, the
        # catalog, the escalation check): while it runs, they cost the recovery nothing.
        self._watched = 0.0
        with self._lock(incident.id):
            plan_path = self._plan_copy(incident)
            while True:
                incident = self.service.load(incident.id)
                step = next((s for s in incident.steps if s.open), None)
                halt = (Halt("finished", None, f"{incident.id}: every step is settled")
                        if step is None else self._blocked(incident, step, retry))  # fmt: skip
                if halt is not None:
                    self._watch(incident.id, force=True)
                    self.service.sync(incident.id)
                    return halt
                assert step is not None
                retry = None if retry == step.id else retry
                self._run(incident, step, plan_path)

    def _blocked(self, incident: Incident, step: StepState, retry: str | None) -> Halt | None:
        """Why ``step`` cannot run now, or None when it can."""
        inc, sid = incident.id, step.id
        if step.running is not None:
            where = step.running
            if where["host"] != self.host or alive(int(where["pid"])):
                return Halt("running", sid, f"step {sid} ({step.title}) is running: process"
                            f" {where['pid']} on {where['host']}")  # fmt: skip
            self.service.record(inc, "step_interrupted", DRIVER,
                                {"step": sid, "pid": where["pid"]}, self.now())  # fmt: skip
            step.interrupted = True
        if step.interrupted and step.rerun != "safe" and retry != sid:
            return Halt("interrupted", sid, f"step {sid} ({step.title}) was interrupted (the"
                        " process driving it died) and its rerun is `ask`: run it again with"
                        f" `drplan incident run {inc} --retry {sid}`, or record it with"
                        f" `drplan incident step {inc} {sid} done|fail`")  # fmt: skip
        if step.status == FAILED and retry != sid:
            return Halt("failed", sid, f"step {sid} ({step.title}) failed: the commander"
                        f" decides: `drplan incident run {inc} --retry {sid}`, or"
                        f" `drplan incident step {inc} {sid} done|skip`")  # fmt: skip
        if not step.automated:
            who = f" ({step.owner})" if step.owner else ""
            return Halt("manual", sid, f"waiting for step {sid} {step.title}{who}: record it"
                        f" with `drplan incident step {inc} {sid} done`")  # fmt: skip
        if step.approve and step.approved_by is None:
            return Halt("approval", sid, f"step {sid} ({step.title}) waits for approval by"
                        f" {step.approve}: `drplan incident approve {inc} {sid} --as"
                        f" {step.approve}`")  # fmt: skip
        return None

    def _run(self, incident: Incident, step: StepState, plan_path: str) -> None:
        argv = argv_of(step.action, step.run, plan_path)
        shown = step.action or step.run
        attempt = step.attempts + 1

        def started(pid: int) -> None:
            self.service.record(incident.id, "step_started", DRIVER, {
                "step": step.id, "attempt": attempt, "pid": pid, "host": self.host,
                "command": shown,
            }, self.now(), sync=False)  # fmt: skip
            self._tell(f"step {step.id} {step.title}: started ({shown})")

        synced = False

        def meanwhile() -> None:
            nonlocal synced
            if not synced:  # the step's start, in the catalog too
                self.service.sync(incident.id)
                synced = True
            self._watch(incident.id)
            if step.recovers:  # what stops the clock after it, ready before it ends
                import drplan.incidents.recovered  # noqa: F401, PLC0415 - psycopg

        env = {**os.environ, **_context(incident, step, plan_path, self._plan)}
        done = execute(argv, env, step.timeout or DEFAULT_TIMEOUT,
                       lambda: _secrets(self._plan(incident.id)), started, meanwhile,
                       self.stopping)  # fmt: skip
        outcome = "done" if done.exit_code == 0 else "fail"
        data: dict[str, Any] = {
            "step": step.id, "outcome": outcome, "automated": True, "attempt": attempt,
            "exit_code": done.exit_code, "timed_out": done.timed_out,
            "seconds": round(done.seconds, 3), "output": done.output,
        }  # fmt: skip
        if done.timed_out:
            data["note"] = f"stopped after its timeout of {step.timeout or DEFAULT_TIMEOUT:g}s"
        elif done.exit_code != 0:
            data["note"] = f"exited {done.exit_code}: {_last_line(done.output)}"
        # The clocks are stopped before the timeline goes to the catalog and off site:
        # that is the engine's housekeeping, not part of the recovery it measures.
        self.service.record(incident.id, "step", DRIVER, data, self.now(), sync=False,
                            copy=False)  # fmt: skip
        said = data.get("note") or (_last_line(done.output) if done.output.strip() else "")
        self._tell(f"step {step.id} {step.title}: {outcome}"
                   + (f" ({said})" if any(c.isalnum() for c in said) else ""))  # fmt: skip
        if outcome == "done" and step.recovers:
            from drplan.incidents.recovered import stop_clocks  # noqa: PLC0415 - psycopg

            for event in stop_clocks(self.service, self.service.load(incident.id), step,
                                     self._plan(incident.id), self.now):  # fmt: skip
                self._tell(summary(event.kind, event.data))
        self.service.sync(incident.id)
        self.service.copy_if_due(incident.id)

    def _plan(self, incident: str) -> Plan:
        """The plan ``incident`` was declared with, as a model (built once)."""
        if incident not in self._plans:
            from drplan.incidents.declare import declared_plan  # noqa: PLC0415 - pydantic

            self._plans[incident] = declared_plan(self.service.load(incident).declared)
        return self._plans[incident]

    def _watch(self, incident_id: str, force: bool = False) -> None:
        """Page whoever is due (a phase past its window, a deadline the drills say is
        lost): when driving stops, and every WATCH_EVERY seconds while a step runs, so a
        restore that outlasts its window is escalated while it runs."""
        if not force and time.monotonic() - self._watched < WATCH_EVERY and self._watched:
            return
        self._watched = time.monotonic()
        from drplan.incidents.escalate import Escalator  # noqa: PLC0415 - it imports runner's peers
        from drplan.incidents.predict import predict  # noqa: PLC0415

        incident = self.service.load(incident_id)
        try:
            for event in Escalator(self.service, self._plan(incident_id), self.now,
                                   self.host).check(incident, predict(incident, self.now())):  # fmt: skip
                self._tell(summary(event.kind, event.data))
        except DrplanError as exc:  # a step runs on whatever paging does
            self.service.warnings.append(f"escalation check: {exc.message}")
        from drplan.incidents.messages import Messenger  # noqa: PLC0415

        try:
            for sent in Messenger(self.service, self._plan(incident_id), self.now,
                                  self.host).send_due(self.service.load(incident_id)):  # fmt: skip
                if not sent["delivered"]:
                    self.service.warnings.append(str(sent.get("error")))
        except DrplanError as exc:
            self.service.warnings.append(f"updates: {exc.message}")

    def _tell(self, line: str) -> None:
        if self.on_event is not None:
            self.on_event(line)

    def _plan_copy(self, incident: Incident) -> str:
        """The plan as it was at declaration, which automated steps run against: its own
        file while unchanged (a restored server's restore_command, run as the server's
        user, reads it there), else a copy beside the journal."""
        text = incident.declared["plan_text"]
        original = Path(incident.declared["plan"]["path"])
        with contextlib.suppress(OSError):
            if (
                hashlib.sha256(original.read_bytes()).hexdigest()
                == incident.declared["plan"]["sha256"]
            ):
                return str(original.resolve())
        path = self.service.journal.directory / f"{incident.id}.plan.yaml"
        with contextlib.suppress(OSError):
            if path.read_text() == text:
                return str(path)
        staged = path.with_name(path.name + ".new")
        staged.write_text(text)
        staged.chmod(0o600)
        os.replace(staged, path)
        return str(path)

    @contextlib.contextmanager
    def _lock(self, incident: str) -> Iterator[None]:
        directory = self.service.journal.directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(directory / f"{incident}.drive.lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DrplanError(f"another process drives incident {incident} already",
                                  hint="`drplan incident status` shows where it is") from None  # fmt: skip
            yield


def _context(
    incident: Incident, step: StepState, plan_path: str, plan: Callable[[str], Plan]
) -> dict[str, str]:
    """What a step is told of its incident, in its environment (``plan``: only for an
    incident declared before declarations named the databases)."""
    env = {
        "DRPLAN_INCIDENT": incident.id,
        "DRPLAN_SCENARIO": incident.scenario,
        "DRPLAN_SYSTEMS": ",".join(incident.systems),
        "DRPLAN_SINCE": clock.rfc3339(incident.since),
        "DRPLAN_RECOVERY_POINT": clock.rfc3339(incident.since),  # the last point before it
        "DRPLAN_STEP": step.id,
        "DRPLAN_PLAN": plan_path,
        "DRPLAN_REHEARSAL": "1" if incident.declared.get("rehearsal") else "0",
    }
    connections = incident.declared.get("databases")
    if connections is None:
        from drplan.incidents.declare import databases  # noqa: PLC0415 - pydantic

        connections = databases(plan(incident.id))
    names = [n for n in [*step.recovers, *incident.systems] if n in connections]
    if names:
        env["DRPLAN_TARGET_SYSTEM"] = names[0]
        env["DRPLAN_TARGET"] = connections[names[0]]
        if incident.declared.get("rehearsal"):  # the stand-in, once a step has made it
            from drplan.incidents.rehearsal import stand_ins_of  # noqa: PLC0415

            stand_in = stand_ins_of(plan(incident.id), incident.id).get(names[0])
            if stand_in is not None:
                env["DRPLAN_TARGET"] = stand_in.connection(connections[names[0]])
        if step.run is not None:  # a shell step reaches the target as smoke checks do
            from drplan.incidents.libpq import libpq_env  # noqa: PLC0415

            env.update(libpq_env(env["DRPLAN_TARGET"], _password(incident, names[0], plan)))
    return env


def _password(incident: Incident, system: str, plan: Callable[[str], Plan]) -> str | None:
    """The database's password when it is set here (None: the step has its own way)."""
    variables = incident.declared.get("database_passwords")
    if variables is not None:  # its variable, recorded at the declaration
        variable = variables.get(system)
        return (os.environ.get(variable) or None) if variable else None
    from drplan.plan.model import PostgresSystem  # noqa: PLC0415 - an older declaration

    spec = plan(incident.id).systems[system]
    assert isinstance(spec, PostgresSystem)
    with contextlib.suppress(DrplanError):
        return spec.password.resolve() if spec.password else None
    return None


def _secrets(plan: Plan) -> list[tuple[str, str]]:
    """Each secret value the plan references that is set here, with its reference."""
    from drplan.plan.secrets import find_refs  # noqa: PLC0415 - pydantic

    return [(os.environ[ref.variable], str(ref)) for _, ref in find_refs(plan)
            if os.environ.get(ref.variable)]  # fmt: skip


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
