"""`drplan secrets list|verify` against the SmartWatts plan and real services on loopback;
inline secrets refused by `plan validate`. No value may ever reach the output."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SMARTWATTS, SMARTWATTS_SECRETS, Result
from tests.fixtures.postgres import PgCluster
from tests.fixtures.receivers import SMTP_PASSWORD, SMTP_USER, HttpReceiver, MailServer
from tests.fixtures.registry import NewRegistry
from tests.fixtures.seaweedfs import SeaweedFS
from tests.integration.conftest import files_job_plan
from tests.integration.test_locations import s3_location

Run = Callable[..., Result]
T1, T2, T3 = "2026-11-01T09:00:00Z", "2026-11-20T14:30:00Z", "2026-11-25T08:00:00Z"


@pytest.fixture
def smartwatts_env(monkeypatch: pytest.MonkeyPatch, password: str, tmp_path: Path) -> Path:
    for name, value in SMARTWATTS_SECRETS.items():
        monkeypatch.setenv(name, value)
    state = tmp_path / "state"
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(state))
    return state


def listing(run: Run) -> dict[str, dict[str, Any]]:
    result = run("--plan", str(SMARTWATTS), "secrets", "list", "--json")
    assert result.code == 0, result.err
    return {row["reference"]: row for row in json.loads(result.out)}


def assert_no_value(text: str, values: list[str]) -> None:
    for value in values:
        assert value not in text


def test_list_names_every_reference_with_its_uses_and_never_a_value(
    run: Run, smartwatts_env: Path, password: str
) -> None:
    text = run("--plan", str(SMARTWATTS), "secrets", "list")
    assert text.code == 0, text.err
    rows = listing(run)
    values = [*SMARTWATTS_SECRETS.values(), password]
    assert_no_value(text.out + text.err, values)
    assert_no_value(json.dumps(rows), values)
    for state_file in smartwatts_env.iterdir():  # nor in what is kept
        assert_no_value(state_file.read_bytes().decode("latin-1"), values)

    expected = {
        "${SMARTWATTS_DB_PASSWORD}": ("postgres-password", ["systems.smartwatts-db.password"]),
        "${REGISTRY_PASSWORD}": ("registry-password", ["systems.api.password"]),
        "${SLACK_WEBHOOK_URL}": ("slack-webhook", ["channels.slack-incident.webhook_url"]),
        "${SMTP_PASSWORD}": ("smtp-password", ["channels.email.password"]),
        "${PAGERDUTY_ROUTING_KEY}": ("pagerduty-routing-key", ["channels.pagerduty.routing_key"]),
        "${STATUS_PAGE_API_KEY}": ("status-page-api-key", ["channels.status-page.api_key"]),
        "$DRPLAN_PASSWORD": (
            "repository-password",
            [
                "locations.primary",
                "locations.secondary",
                "locations.cloud",
                "locations.evidence",
                "locations.archive",
            ],
        ),
    }
    assert set(rows) == set(expected)
    for reference, (kind, uses) in expected.items():
        row = rows[reference]
        assert (row["kind"], [u["path"] for u in row["uses"]]) == (kind, uses)
        assert row["set"] is True
        assert len(row["fingerprint"]) == 12
        assert row["last_changed"] is None  # unknown before a change is seen
        assert reference in text.out
    # the S3 locations take AWS's own credentials, which the plan does not name
    assert "not listed: S3 location(s) secondary, cloud, evidence, archive" in text.out


def test_a_rotation_shows_a_new_fingerprint_and_its_date(
    run: Run, smartwatts_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRPLAN_NOW", T1)
    before = listing(run)
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-rotated-SENTINEL-7")
    monkeypatch.setenv("DRPLAN_NOW", T2)
    after = listing(run)

    rotated = after["${SMTP_PASSWORD}"]
    assert rotated["fingerprint"] != before["${SMTP_PASSWORD}"]["fingerprint"]
    assert rotated["last_changed"] == T2
    assert rotated["first_recorded"] == T1
    for reference, row in after.items():
        if reference != "${SMTP_PASSWORD}":
            assert row["fingerprint"] == before[reference]["fingerprint"]
            assert row["last_changed"] is None

    # Listing again changes nothing; putting the old value back is a change, and says so.
    monkeypatch.setenv("DRPLAN_NOW", T3)
    assert listing(run)["${SMTP_PASSWORD}"]["last_changed"] == T2
    monkeypatch.setenv("SMTP_PASSWORD", SMARTWATTS_SECRETS["SMTP_PASSWORD"])
    back = listing(run)["${SMTP_PASSWORD}"]
    assert (back["last_changed"], back["reused"]) == (T3, True)
    text = run("--plan", str(SMARTWATTS), "secrets", "list")
    assert "an earlier value, back again" in text.out


def test_fingerprints_are_keyed_per_state_directory(
    run: Run, smartwatts_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = listing(run)
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "elsewhere"))
    second = listing(run)
    for reference, row in first.items():
        assert row["fingerprint"] != second[reference]["fingerprint"], reference
    key = smartwatts_env / "secrets.key"
    assert len(key.read_bytes()) == 32
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


# -- verify ------------------------------------------------------------------------------

REGISTRY_USER, REGISTRY_PASSWORD = "drplan", "registry-pass-SENTINEL-8"


@pytest.fixture
def services(
    tmp_path: Path,
    seaweedfs: SeaweedFS,
    s3_secrets: None,
    password: str,
    pg_cluster: Callable[..., PgCluster],
    new_registry: NewRegistry,
    mail_server: MailServer,
    receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
    run: Run,
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A plan whose secrets open a real S3 location, PostgreSQL, registry with basic auth,
    SMTP server and the repository; a Slack channel pointing at a receiver. Yields the plan
    and the right value of each variable (all exported)."""
    cluster = pg_cluster()
    registry = new_registry(htpasswd=(REGISTRY_USER, REGISTRY_PASSWORD))
    source = tmp_path / "source"
    source.mkdir()
    locations = {
        "local": {"role": "primary", "kind": "local", "path": str(tmp_path / "repo")},
        "cloud": s3_location(seaweedfs, seaweedfs.create_bucket(), "cloud"),
    }
    path = files_job_plan(tmp_path, source, locations)
    plan = yaml.safe_load(path.read_text())
    common = {"tier": "critical", "data_classes": ["configuration"]}
    plan["systems"]["db"] = {**common, "kind": "postgres", "connection": cluster.dsn,
                             "password": "${PG_PASSWORD}"}  # fmt: skip
    plan["systems"]["images"] = {**common, "kind": "images", "registry": registry.url,
                                 "images": ["app/api"], "username": REGISTRY_USER,
                                 "password": "${REG_PASSWORD}"}  # fmt: skip
    plan["channels"] = {
        "mail": {"kind": "email", "smtp_host": mail_server.host, "smtp_port": mail_server.port,
                 "sender": "dr@example.test", "to": ["ops@example.test"], "username": SMTP_USER,
                 "password": "${MAIL_PASSWORD}"},
        "slack": {"kind": "slack", "webhook_url": "${HOOK_URL}"},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(plan))
    good = {"PG_PASSWORD": cluster.password, "REG_PASSWORD": REGISTRY_PASSWORD,
            "MAIL_PASSWORD": SMTP_PASSWORD, "HOOK_URL": f"{receiver.url}/slack/hook"}  # fmt: skip
    for name, value in good.items():
        monkeypatch.setenv(name, value)
    good |= {"DR_S3_KEY": os.environ["DR_S3_KEY"], "DR_S3_SECRET": os.environ["DR_S3_SECRET"],
             "DRPLAN_PASSWORD": password}  # fmt: skip
    made = run(
        "--plan", str(path), "repo", "init", "local", "--kdf-memory", "1024", "--kdf-time", "1"
    )
    assert made.code == 0, made.err
    yield path, good
    # Nothing was sent to people: no mail, no Slack message.
    assert mail_server.messages == []
    assert receiver.requests == []


def verdicts(result: Result) -> dict[str, dict[str, Any]]:
    return {row["reference"]: row for row in json.loads(result.out)}


def test_verify_proves_every_credential_against_its_service(
    run: Run, services: tuple[Path, dict[str, str]], mail_server: MailServer
) -> None:
    plan, good = services
    result = run("--plan", str(plan), "secrets", "verify", "--json")
    assert result.code == 0, result.err
    got = verdicts(result)
    statuses = {reference: row["status"] for reference, row in got.items()}
    assert statuses == {
        "${DR_S3_KEY}": "ok",
        "${DR_S3_SECRET}": "ok",
        "${PG_PASSWORD}": "ok",
        "${REG_PASSWORD}": "ok",
        "${MAIL_PASSWORD}": "ok",
        "${HOOK_URL}": "not verifiable",
        "$DRPLAN_PASSWORD": "ok",
    }
    assert "posts to the channel" in got["${HOOK_URL}"]["detail"]
    assert "select 1" in got["${PG_PASSWORD}"]["detail"]
    assert "over TLS" in got["${MAIL_PASSWORD}"]["detail"]
    assert mail_server.logins == [SMTP_USER]  # logged in, nothing sent
    assert all(row["seconds"] >= 0 for row in got.values())
    text = run("--plan", str(plan), "secrets", "verify")
    assert text.code == 0, text.err
    assert_no_value(result.out + result.err + text.out + text.err, list(good.values()))


WRONG = {
    "DR_S3_SECRET": ("wrong-s3-secret-SENTINEL-9", ["${DR_S3_KEY}", "${DR_S3_SECRET}"]),
    "PG_PASSWORD": ("wrong-pg-SENTINEL-10", ["${PG_PASSWORD}"]),
    "REG_PASSWORD": ("wrong-registry-SENTINEL-11", ["${REG_PASSWORD}"]),
    "MAIL_PASSWORD": ("wrong-smtp-SENTINEL-12", ["${MAIL_PASSWORD}"]),
    "DRPLAN_PASSWORD": ("wrong-repo-SENTINEL-13", ["$DRPLAN_PASSWORD"]),
}
ANSWERS: dict[str, str | tuple[str, ...]] = {
    "${DR_S3_KEY}": "SignatureDoesNotMatch",
    "${DR_S3_SECRET}": "SignatureDoesNotMatch",
    "${PG_PASSWORD}": "password authentication failed",
    "${REG_PASSWORD}": "authentication failed (401)",
    "${MAIL_PASSWORD}": "535",
    "$DRPLAN_PASSWORD": "wrong password",
}


def test_a_wrong_value_fails_in_one_line_naming_its_reference_and_the_answer(
    run: Run, services: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, good = services
    for variable, (wrong, _) in WRONG.items():
        monkeypatch.setenv(variable, wrong)
    result = run("--plan", str(plan), "secrets", "verify")
    assert result.code == 1, result.out + result.err
    lines = {line[15:].split()[0]: line for line in result.out.splitlines() if line.strip()}
    for reference, answer in ANSWERS.items():
        assert lines[reference].startswith("failed "), lines[reference]
        expected = (answer,) if isinstance(answer, str) else answer
        assert any(a in lines[reference] for a in expected), lines[reference]
    assert lines["${HOOK_URL}"].startswith("not verifiable ")
    assert result.err.count("\n") == 1
    assert "6 secrets of 7 failed verification" in result.err
    assert_no_value(result.out + result.err, [w for w, _ in WRONG.values()] + list(good.values()))

    as_json = run("--plan", str(plan), "secrets", "verify", "--json")
    assert as_json.code == 1
    assert_no_value(as_json.out + as_json.err, [w for w, _ in WRONG.values()])


def test_verify_takes_references_and_refuses_unknown_ones(
    run: Run, services: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, _ = services
    monkeypatch.setenv("MAIL_PASSWORD", "wrong-smtp-SENTINEL-12")
    only = run(
        "--plan", str(plan), "secrets", "verify", "--json", "PG_PASSWORD", "password_command"
    )
    assert only.code == 0, only.err  # the wrong SMTP password was not asked about
    assert [row["reference"] for row in json.loads(only.out)] == ["${PG_PASSWORD}",
                                                                  "$DRPLAN_PASSWORD"]  # fmt: skip
    unknown = run("--plan", str(plan), "secrets", "verify", "${NOPE}")
    assert unknown.code == 2
    assert "'${NOPE}' is not a secret of the plan" in unknown.err
    monkeypatch.delenv("PG_PASSWORD")
    unset = run("--plan", str(plan), "secrets", "verify", "PG_PASSWORD")
    assert unset.code == 5, unset.err
    assert unset.out.startswith("not set ")


# -- inline secrets ----------------------------------------------------------------------

INLINE = "inline-SENTINEL-value-0123456789"


def _set(plan: dict[str, Any], where: str, value: str) -> None:
    base: dict[str, dict[str, Any]] = {
        "locations.cloud": {"role": "cloud", "kind": "s3", "bucket": "dr-test",
                            "access_key_id": "${K}", "secret_access_key": "${S}"},
        "systems.images": {"kind": "images", "tier": "important", "data_classes": ["database"],
                           "registry": "http://127.0.0.1:5000", "images": ["a/b"],
                           "username": "u", "password": "${R}", "restore_password": "${R2}"},
        "systems.etcd": {"kind": "etcd", "tier": "important", "data_classes": ["database"],
                         "endpoints": ["http://127.0.0.1:2379"], "user": "root",
                         "password": "${E}"},
        "channels.slack": {"kind": "slack", "webhook_url": "${W}"},
        "channels.pd": {"kind": "pagerduty", "routing_key": "${P}"},
        "channels.mail": {"kind": "email", "smtp_host": "mail", "sender": "a@b.c",
                          "to": ["d@e.f"], "username": "u", "password": "${M}"},
        "channels.hook": {"kind": "webhook", "url": "${U}", "signing_secret": "${H}"},
        "channels.sp": {"kind": "status_page", "api_url": "https://api.statuspage.io",
                        "page_id": "p", "api_key": "${A}"},
        "channels.phone": {"kind": "phone", "call": ["ic"], "webhook_url": "${C}"},
        "web.oidc": {"issuer": "https://id.example", "client_id": "drplan",
                     "client_secret": "${O}"},
    }  # fmt: skip
    section, name, field = where.split(".")
    node = plan.setdefault(section, {})
    node[name] = {**node.get(name, {}), **base.get(f"{section}.{name}", {}), field: value}


FIELDS = [
    ("locations.cloud.access_key_id", "s3-access-key"),
    ("locations.cloud.secret_access_key", "s3-secret-key"),
    ("systems.db.password", "postgres-password"),
    ("systems.images.password", "registry-password"),
    ("systems.images.restore_password", "registry-password"),
    ("systems.etcd.password", "etcd-password"),
    ("channels.slack.webhook_url", "slack-webhook"),
    ("channels.pd.routing_key", "pagerduty-routing-key"),
    ("channels.mail.password", "smtp-password"),
    ("channels.hook.url", "webhook-url"),
    ("channels.hook.signing_secret", "webhook-secret"),
    ("channels.sp.api_key", "status-page-api-key"),
    ("channels.phone.webhook_url", "phone-webhook-url"),
    ("web.oidc.client_secret", "oidc-client-secret"),
]


@pytest.mark.parametrize(("where", "kind"), FIELDS, ids=[f for f, _ in FIELDS])
def test_an_inline_secret_is_refused_and_never_echoed(
    run: Run, plan_data: dict[str, Any], write_plan: Callable[..., Path], where: str, kind: str
) -> None:
    _set(plan_data, where, "${FINE}")  # the same plan with a reference is valid
    fine = run("plan", "validate", "--no-env", str(write_plan(plan_data)))
    assert fine.code == 0, fine.err
    listed = run("--plan", str(write_plan(plan_data)), "secrets", "list", "--json")
    row = next(r for r in json.loads(listed.out) if r["reference"] == "${FINE}")
    assert row["uses"] == [{"path": where, "kind": kind}]
    _set(plan_data, where, INLINE)
    for args in ((), ("--json",)):
        result = run("plan", "validate", *args, str(write_plan(plan_data)))
        assert result.code == 4, result.out + result.err
        assert INLINE not in result.out + result.err
        assert "secrets are not written into the plan" in result.out + result.err
