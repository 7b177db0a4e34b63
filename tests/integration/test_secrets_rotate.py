"""`drplan secrets rotate` inside an incident, against a real PostgreSQL, a real repository in
two locations and a real SMTP server: each new value proven before its old one is revoked,
in that order in the timeline, with fingerprints and never a value; the old PostgreSQL and
repository passwords refused afterwards; a new value that does not prove out changes
nothing and revokes nothing (exit 1); no old value recorded revoked before its new value
was verified (exit 24)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from drplan.errors import IncidentStateError
from drplan.incidents.service import open_incidents
from drplan.plan.loader import load_plan
from drplan.security.secrets_rotate import Outcome, Rotator
from testbed.plans import clean_plan, local_only
from tests.conftest import Result
from tests.fixtures.postgres import PgCluster
from tests.fixtures.receivers import SMTP_PASSWORD, SMTP_USER, MailServer
from tests.integration.test_locations import FAST_KDF

Cli = Callable[..., Result]

OLD_PG, NEW_PG = "pg-old-SENTINEL-21", "pg-new-SENTINEL-22"
NEW_REPO = "repo-new-SENTINEL-23"
OLD_MAIL = "smtp-old-SENTINEL-24"  # what the plan reads: the provider no longer takes it
WRONG_MAIL = "smtp-wrong-SENTINEL-25"
ROLE = "app"


@dataclass
class Setup:
    cli: Cli
    cluster: PgCluster
    state: Path
    new_values: Path  # NAME=value, mode 0600
    plan: dict[str, Any]
    path: Path

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.plan))


@pytest.fixture
def setup(
    tmp_path: Path, run: Callable[..., Result], password: str, mail_server: MailServer,
    pg_cluster: Callable[..., PgCluster], monkeypatch: pytest.MonkeyPatch,
) -> Setup:  # fmt: skip
    """A plan whose ${PG_PASSWORD} is role `app`'s on a real server, whose repository is in
    two locations (a replica), and whose ${MAIL_PASSWORD} logs in to a real SMTP server; a
    runbook step that rotates them from a file of new values; nothing else declared."""
    cluster = pg_cluster()
    cluster.sql(f"create role {ROLE} login password '{OLD_PG}'")
    source = tmp_path / "source"
    source.mkdir()
    (source / "app.conf").write_text("listen 8080\n")
    plan = local_only(clean_plan())
    plan["locations"]["local"]["path"] = str(tmp_path / "local")
    plan["locations"]["replica"] = {"role": "secondary", "kind": "local",
                                    "path": str(tmp_path / "replica")}  # fmt: skip
    plan["systems"]["web"]["paths"] = [str(source)]
    plan["systems"]["db"] |= {"connection": f"host=127.0.0.1 port={cluster.port} user={ROLE}"
                              " dbname=postgres", "password": "${PG_PASSWORD}"}  # fmt: skip
    plan["channels"] = {"mail": {"kind": "email", "smtp_host": mail_server.host,
                                 "smtp_port": mail_server.port, "sender": "dr@example.test",
                                 "to": ["ops@example.test"], "username": SMTP_USER,
                                 "password": "${MAIL_PASSWORD}"}}  # fmt: skip
    new_values = tmp_path / "new-secrets.env"
    new_values.write_text(f"# rotated after INC\nPG_PASSWORD={NEW_PG}\nDRPLAN_PASSWORD={NEW_REPO}\n"
                          f"MAIL_PASSWORD={SMTP_PASSWORD}\n")  # fmt: skip
    new_values.chmod(0o600)
    plan["runbooks"]["rb"]["phases"][0]["steps"] = [
        {"title": "Rotate credentials", "owner": "ic",
         "action": f"secrets rotate --new-values {new_values}"},
        {"title": "Revoke the old ones at the providers", "owner": "ic"},
    ]  # fmt: skip
    state = tmp_path / "state"
    for name, value in {"PG_PASSWORD": OLD_PG, "MAIL_PASSWORD": OLD_MAIL,
                        "DRPLAN_STATE_DIR": str(state)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    made = Setup(partial(run, "--plan", str(tmp_path / "plan.yaml")), cluster, state,
                 new_values, plan, tmp_path / "plan.yaml")  # fmt: skip
    made.write()
    for args in (("repo", "init", "local", *FAST_KDF), ("backup", "web"),
                 ("copy", "--from", "local", "--to", "replica")):  # fmt: skip
        done = made.cli(*args)
        assert done.code == 0, (args, done.err)
    return made


def declared(cli: Cli) -> str:
    done = cli("incident", "declare", "db-loss", "--json")
    assert done.code == 0, done.err
    return str(json.loads(done.out)["id"])


def timeline(cli: Cli, incident: str) -> list[dict[str, Any]]:
    done = cli("incident", "timeline", incident, "--json")
    assert done.code == 0, done.err
    return [json.loads(line) for line in done.out.splitlines()]


def rotation_entries(cli: Cli, incident: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in timeline(cli, incident):
        if event["kind"].startswith("secret_"):
            found.setdefault(event["data"]["reference"], []).append(event)
    return found


def logs_in(cluster: PgCluster, password: str) -> bool:
    """Whether the role logs in with ``password``; a refusal must be the password's."""
    try:
        with psycopg.connect(host="127.0.0.1", port=cluster.port, user=ROLE, dbname="postgres",
                             password=password, connect_timeout=10):  # fmt: skip
            return True
    except psycopg.OperationalError as exc:
        refused = exc
    assert "password authentication failed" in str(refused)
    return False


def stored_text(*roots: Path) -> str:
    """Everything kept on disk under ``roots`` (journal, catalog, history, repositories)."""
    return "".join(
        p.read_bytes().decode("latin-1") for root in roots for p in root.rglob("*") if p.is_file()
    )


def assert_no_value(text: str) -> None:
    for value in (OLD_PG, NEW_PG, NEW_REPO, OLD_MAIL, SMTP_PASSWORD, WRONG_MAIL):
        assert value not in text


def test_a_runbook_step_rotates_postgres_and_the_repository_new_verified_before_old_revoked(
    setup: Setup, password: str, monkeypatch: pytest.MonkeyPatch, mail_server: MailServer,
) -> None:  # fmt: skip
    cli = setup.cli
    incident = declared(cli)
    before = {row["reference"]: row for row in json.loads(cli("secrets", "list", "--json").out)}

    ran = cli("incident", "run", incident)
    assert ran.code == 0, ran.err + ran.out
    [step] = [e for e in timeline(cli, incident) if e["kind"] == "step"]
    assert step["data"]["exit_code"] == 0, step["data"]["output"]
    output = step["data"]["output"]
    assert f"recorded in {incident}'s timeline" in output

    entries = rotation_entries(cli, incident)
    for reference in ("${PG_PASSWORD}", "$DRPLAN_PASSWORD"):
        verified, revoked = entries[reference]
        assert (verified["kind"], revoked["kind"]) == ("secret_new_verified", "secret_old_revoked")
        assert verified["seq"] < revoked["seq"]
        assert revoked["data"]["verified_entry"] == verified["seq"]
        assert revoked["data"]["by"] == "drplan"
        old, new = verified["data"]["old_fingerprint"], verified["data"]["new_fingerprint"]
        assert old == before[reference]["fingerprint"]
        assert (revoked["data"]["old_fingerprint"], revoked["data"]["new_fingerprint"]) == (
            old,
            new,
        )
        assert len(new) == 12
        assert new != old
        assert all(c["status"] == "ok" for c in verified["data"]["checks"])
        assert all(c["refused"] for c in revoked["data"]["checks"])
        assert f"{reference}  " in output
        assert f"{old} -> {new}" in output
    pg = entries["${PG_PASSWORD}"][0]["data"]
    assert "ALTER ROLE, SCRAM verifier" in pg["set_by_drplan"][0]
    assert (
        "password authentication failed"
        in entries["${PG_PASSWORD}"][1]["data"]["checks"][0]["detail"]
    )
    repo = entries["$DRPLAN_PASSWORD"][1]["data"]
    assert sorted(r["location"] for r in repo["revoked"]) == ["local", "replica"]
    # SMTP: proven, and left to a person: its old value is revoked at the provider.
    [mail] = entries["${MAIL_PASSWORD}"]
    assert mail["kind"] == "secret_new_verified"
    assert mail["data"]["revoke_at_provider"] == ["channels.mail.password"]
    assert "--confirm-revoked ${MAIL_PASSWORD}" in output

    # The old PostgreSQL password is refused, the new one logs in.
    assert not logs_in(setup.cluster, OLD_PG)
    assert logs_in(setup.cluster, NEW_PG)
    # The old repository password opens neither location; the new one opens both.
    for location in ("local", "replica"):
        assert cli("snapshots", "--repo", location).code == 12
    monkeypatch.setenv("DRPLAN_PASSWORD", NEW_REPO)
    for location in ("local", "replica"):
        assert cli("snapshots", "--repo", location).code == 0
        assert len(json.loads(cli("key", "list", "--repo", location, "--json").out)) == 1

    # The person revoked the old SMTP password; drplan proves it refused, then records it.
    confirmed = cli("secrets", "rotate", "--confirm-revoked", "--incident", incident, "--json")
    assert confirmed.code == 0, confirmed.err
    rows = {row["reference"]: row for row in json.loads(confirmed.out)["secrets"]}
    assert {reference: row["status"] for reference, row in rows.items()} == dict.fromkeys(
        ("${PG_PASSWORD}", "${MAIL_PASSWORD}", "$DRPLAN_PASSWORD"), "revoked"
    )
    assert rows["${MAIL_PASSWORD}"]["detail"] == "old value refused"
    assert rows["${PG_PASSWORD}"]["detail"].startswith("recorded revoked already")
    mail_entries = rotation_entries(cli, incident)["${MAIL_PASSWORD}"]
    assert [e["kind"] for e in mail_entries] == ["secret_new_verified", "secret_old_revoked"]
    assert mail_entries[1]["data"]["by"] == "provider"
    assert "535" in mail_entries[1]["data"]["checks"][0]["detail"]

    # Once the plan reads the new values, `secrets list` shows them as changed now.
    monkeypatch.setenv("PG_PASSWORD", NEW_PG)
    after = {row["reference"]: row for row in json.loads(cli("secrets", "list", "--json").out)}
    assert after["${PG_PASSWORD}"]["fingerprint"] == pg["new_fingerprint"]
    assert after["${PG_PASSWORD}"]["last_changed"] is not None
    assert after["$DRPLAN_PASSWORD"]["fingerprint"] == repo["new_fingerprint"]

    # Rerun with the same new values: nothing is done or recorded twice.
    count = len(timeline(cli, incident))
    again = cli("secrets", "rotate", "--incident", incident, "--new-values", str(setup.new_values))
    assert again.code == 0, again.err
    assert len(timeline(cli, incident)) == count

    text = ran.out + ran.err + confirmed.out + confirmed.err + again.out + again.err
    assert_no_value(text + json.dumps(timeline(cli, incident)) + stored_text(setup.state))
    assert password not in text + stored_text(setup.state)
    assert mail_server.messages == []  # logged in to prove, never sent


def test_a_new_value_that_does_not_prove_out_changes_nothing_and_revokes_nothing(
    setup: Setup, pg_cluster: Callable[..., PgCluster], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # A second server shares the password; it refuses a password equal to the user name
    # (passwordcheck), after the first one took it: the first is put back.
    strict = pg_cluster(shared_preload_libraries="'passwordcheck'")
    strict.sql(f"create role {ROLE} login password '{OLD_PG}'")
    setup.plan["systems"]["db2"] = {**setup.plan["systems"]["db"], "connection":
        f"host=127.0.0.1 port={strict.port} user={ROLE} dbname=postgres"}  # fmt: skip
    setup.write()
    cli = setup.cli
    incident = declared(cli)
    monkeypatch.setenv("NEW_PG_PASSWORD", ROLE)
    monkeypatch.setenv("NEW_MAIL_PASSWORD", WRONG_MAIL)  # not what the SMTP server takes

    result = cli("secrets", "rotate", "--incident", incident)
    assert result.code == 1, result.err + result.out
    assert result.err.count("\n") == 1
    assert "2 of 2 not rotated: ${PG_PASSWORD}, ${MAIL_PASSWORD}" in result.err
    lines = {line.split()[1]: line for line in result.out.splitlines() if line.startswith("failed")}
    assert "password must not equal user name" in lines["${PG_PASSWORD}"]
    assert "nothing changed, nothing revoked" in lines["${PG_PASSWORD}"]
    assert "535" in lines["${MAIL_PASSWORD}"]

    # Both servers take the old password still; nothing was recorded verified or revoked.
    assert logs_in(setup.cluster, OLD_PG)
    assert logs_in(strict, OLD_PG)
    entries = rotation_entries(cli, incident)
    assert [e["kind"] for e in entries["${PG_PASSWORD}"]] == ["secret_rotation_failed"]
    failed = entries["${PG_PASSWORD}"][0]["data"]
    assert failed["stage"] == "apply"
    assert failed["undone"] == [f"PostgreSQL db: the old password of {ROLE} is back"]
    assert failed["left_changed"] == []
    assert [e["data"]["stage"] for e in entries["${MAIL_PASSWORD}"]] == ["verify"]
    assert not (setup.state / "secrets-seen.json").exists()  # no new fingerprint recorded
    assert_no_value(result.out + result.err + stored_text(setup.state))


def test_no_old_value_is_recorded_revoked_before_its_new_value_was_verified(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = setup.cli
    incident = declared(cli)
    for args in (("MAIL_PASSWORD",), ()):
        refused = cli("secrets", "rotate", "--confirm-revoked", "--incident", incident, *args)
        assert refused.code == 24, refused.err
        assert refused.err.count("\n") == 1
        assert "was verified in" in refused.err
    assert rotation_entries(cli, incident) == {}

    # The rule holds where the entry is written, whoever calls it.
    with open_incidents() as service:
        rotator = Rotator(load_plan(setup.path).plan, service, incident, "ic", setup.state, print)
        with pytest.raises(IncidentStateError, match=r"no new value of .* was verified"):
            rotator.record_revoked(Outcome("${MAIL_PASSWORD}", "smtp-password", "rotated",
                                           old="0" * 12, new="1" * 12), {})  # fmt: skip
    assert rotation_entries(cli, incident) == {}

    # Verified now; the operator already gave the plan the new value, so the old one must
    # be given to be tried: only a value with the recorded old fingerprint is taken.
    monkeypatch.setenv("NEW_MAIL_PASSWORD", SMTP_PASSWORD)
    assert cli("secrets", "rotate", "MAIL_PASSWORD", "--incident", incident).code == 0
    monkeypatch.setenv("MAIL_PASSWORD", SMTP_PASSWORD)
    unknown = cli("secrets", "rotate", "--confirm-revoked", "MAIL_PASSWORD", "--incident", incident)
    assert unknown.code == 2, unknown.err
    assert "no old value of ${MAIL_PASSWORD}" in unknown.err
    monkeypatch.setenv("OLD_MAIL_PASSWORD", OLD_MAIL)
    done = cli("secrets", "rotate", "--confirm-revoked", "MAIL_PASSWORD", "--incident", incident)
    assert done.code == 0, done.err
    assert done.out.startswith("revoked ")
    kinds = [e["kind"] for e in rotation_entries(cli, incident)["${MAIL_PASSWORD}"]]
    assert kinds == ["secret_new_verified", "secret_old_revoked"]

    # Refusals before anything: no incident; a file of new values others may read.
    monkeypatch.delenv("DRPLAN_INCIDENT", raising=False)
    assert cli("secrets", "rotate").code == 2
    setup.new_values.chmod(0o644)
    shared = cli("secrets", "rotate", "--incident", incident, "--new-values", str(setup.new_values))
    assert shared.code == 2
    assert "may be read or written by others" in shared.err
    assert_no_value(unknown.out + unknown.err + done.out + done.err + shared.err)
