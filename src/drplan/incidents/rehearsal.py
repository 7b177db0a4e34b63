"""A rehearsal (game day): the incident engine run for real, with every write to a
production system sent to a stand-in instead.

A runbook's production restore (``restore postgres SYSTEM`` in a step, with no
``--target-dir``) rebuilds the system into a stand-in: a directory and a loopback port
chosen the way the drill engine chooses its scratch targets, and refused the same way
when they would touch a system of the plan. The stand-in is started, recovered to the
point the step asks for, and left running for the steps after it: their
``$DRPLAN_TARGET`` and the checks that stop a system's clock reach it, not production.
Production is never stopped, moved or written.

Stand-ins live under the drill engine's scratch base in ``rehearsals/INC/SYSTEM`` (a
directory a drill's clean-up of killed drills never touches), are listed in
``rehearsals/INC/stand-ins.json``, and are torn down when the rehearsal is resolved.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from drplan.errors import DrplanError
from drplan.incidents.journal import ID_PATTERN
from drplan.nesting import remove_tree

if TYPE_CHECKING:
    from drplan.drills.results import DrillResult
    from drplan.incidents.service import Incidents
    from drplan.incidents.state import Incident
    from drplan.plan.model import Plan

LISTING = "stand-ins.json"


@dataclass(frozen=True)
class StandIn:
    system: str
    data_dir: Path
    port: int

    def connection(self, production: str) -> str:
        """``production``'s connection string, aimed at the stand-in on loopback."""
        params = conninfo_to_dict(production)
        params.update(host="127.0.0.1", port=str(self.port))
        params.pop("hostaddr", None)
        return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def rehearsing(incident_id: str | None) -> bool:
    """Whether ``incident_id`` (the incident a command runs in) is a rehearsal, by its
    own timeline: the environment cannot turn a real incident into one."""
    if not incident_id:
        return False
    from drplan.incidents.service import open_incidents  # noqa: PLC0415 - SQLAlchemy is slow

    with open_incidents() as service:
        return bool(service.load(incident_id).declared.get("rehearsal"))


def new_stand_in(plan: Plan, incident_id: str, system: str) -> StandIn:
    """A fresh, empty directory and a free port for ``system``'s stand-in; refused
    (DrillRefusedError) when either is production's. A stand-in the rehearsal made
    before for the same system (a step run again) is torn down first."""
    from drplan.drills.scratch import refuse_port, refuse_production  # noqa: PLC0415
    from drplan.sources.postgres.scratch import free_port, traversable_to  # noqa: PLC0415

    home = _home(_base_of(plan, system), incident_id)
    root = home / system
    refuse_production(plan, root)
    old = stand_ins(home).get(system)
    if old is not None:
        _tear_down(old)
    remove_tree(root, ignore_errors=True)
    root.mkdir(parents=True, mode=0o711)
    for place in (root, home, home.parent):
        place.chmod(0o711)  # the server's user passes through; nobody lists what is restored
    traversable_to(root)
    port = free_port()
    refuse_port(plan, port)
    return StandIn(system, root / "data", port)


def keep(plan: Plan, incident_id: str, stand_in: StandIn) -> None:
    """List ``stand_in`` as the rehearsal's (it is torn down when the rehearsal ends)."""
    home = _home(_base_of(plan, stand_in.system), incident_id)
    listed = stand_ins(home)
    listed[stand_in.system] = stand_in
    staged = home / f"{LISTING}.new"
    staged.write_text(json.dumps({n: {"data_dir": str(s.data_dir), "port": s.port}
                                  for n, s in listed.items()}, indent=2))  # fmt: skip
    os.replace(staged, home / LISTING)


def stand_ins_of(plan: Plan, incident_id: str) -> dict[str, StandIn]:
    """The stand-ins a rehearsal has running, by system."""
    found: dict[str, StandIn] = {}
    for home in _homes(plan, incident_id):
        found.update(stand_ins(home))
    return found


def stand_ins(home: Path) -> dict[str, StandIn]:
    try:
        listed: dict[str, Any] = json.loads((home / LISTING).read_text())
    except (OSError, ValueError):
        return {}
    return {n: StandIn(n, Path(s["data_dir"]), int(s["port"])) for n, s in listed.items()}


def tear_down(plan: Plan, incident_id: str) -> list[str]:
    """Stop every stand-in of the rehearsal and remove its directory; what was removed."""
    removed = []
    for home in _homes(plan, incident_id):
        if not home.is_dir():
            continue
        for stand_in in stand_ins(home).values():
            _tear_down(stand_in)
            removed.append(str(stand_in.data_dir.parent))
        remove_tree(home, ignore_errors=True)
    return removed


def _tear_down(stand_in: StandIn) -> None:
    from drplan.drills.leftovers import stop_server  # noqa: PLC0415

    stop_server(stand_in.data_dir)
    remove_tree(stand_in.data_dir.parent, ignore_errors=True)


def _home(base: Path, incident_id: str) -> Path:
    if not ID_PATTERN.match(incident_id):  # it names a directory: nothing else gets in
        raise DrplanError(f"{incident_id!r} is not an incident id")
    return base / "rehearsals" / incident_id


def _homes(plan: Plan, incident_id: str) -> list[Path]:
    """Where the rehearsal's stand-ins may be: one home per scratch base of the plan."""
    return [_home(base, incident_id) for base in {_base_of(plan, n) for n in plan.systems}]


def _base_of(plan: Plan, system: str) -> Path:
    from drplan.drills.scratch import scratch_base  # noqa: PLC0415

    return scratch_base(_scratch_dir(plan, system))


def _scratch_dir(plan: Plan, system: str) -> str | None:
    """The scratch directory of the first drill that recovers ``system``, if it sets one."""
    for drill in plan.drills.values():
        if system in drill.systems and drill.scratch_dir:
            return drill.scratch_dir
    return None


def as_drill(incident: Incident, plan: Plan, ended: datetime) -> DrillResult:
    """The rehearsal as a drill of its whole runbook: per system, the RTO from the
    disaster moment to the checks that stopped its clock (the response, not only the
    restore), the RPO, and those checks; a system not recovered is a failure."""
    from drplan.drills.results import DrillResult, new_result  # noqa: PLC0415
    from drplan.drills.validations import Validation  # noqa: PLC0415

    result = DrillResult(f"rehearsal-{incident.scenario}", "rehearsal", incident.scenario,
                         incident.id, incident.declared_at, ended)  # fmt: skip
    for name in incident.systems:
        system = new_result(plan, name, incident.since, None, "the runbook's")
        done = incident.recovered.get(name)
        if done is None:
            why = incident.waived.get(name) or "no recovering step's checks passed"
            system.error = f"not recovered in the rehearsal: {why}"
        else:
            system.rto_seconds = done["rto_seconds"]
            system.rpo_seconds = done.get("rpo_seconds")
            system.validations = [Validation(v["name"], v["kind"], v["outcome"], v["seconds"],
                                             v.get("detail", "")) for v in done["validations"]]  # fmt: skip
        result.systems.append(system)
    return result


def finish(service: Incidents, incident: Incident, plan: Plan, now: datetime) -> list[str]:
    """A resolved rehearsal: its stand-ins torn down, its result kept as a drill's (the
    evidence file, then the catalog row) and said in its timeline; the lines to print."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415
    from drplan.drills.evidence import catalog_row, write_evidence  # noqa: PLC0415
    from drplan.errors import CatalogError  # noqa: PLC0415

    removed = tear_down(plan, incident.id)
    result = as_drill(incident, plan, now)
    path, digest = write_evidence(result, Path(state_dir()) / "drills" / "evidence")
    catalog = service.reachable_catalog()
    recorded = False
    if catalog is not None:
        try:
            catalog.record_drill(catalog_row(result, path, digest))
            recorded = True
        except CatalogError as exc:
            service.warnings.append(f"the rehearsal's drill record is in {path}, but the"
                                    f" catalog could not take it: {exc.message}; `drplan"
                                    " catalog rebuild` adds it from that file")  # fmt: skip
    verdict = "passed" if result.passed else "did not pass: " + "; ".join(result.failures)
    service.record(incident.id, "rehearsed", "drplan", {
        "drill": result.drill, "passed": result.passed, "failures": result.failures,
        "evidence": str(path), "sha256": digest, "cataloged": recorded, "torn_down": removed,
    }, now)  # fmt: skip
    lines = [f"rehearsal recorded as drill {result.drill} (run {incident.id}): {verdict}",
             f"evidence: {path}"]  # fmt: skip
    lines += [f"stand-in removed: {place}" for place in removed]
    return lines
