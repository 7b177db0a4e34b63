"""Who may use the web server and the API: local accounts (argon2), scoped tokens shown
once and stored hashed, refused when expired, revoked or used beyond their scope, roles
and access from the plan, and the audit trail every change goes into, which detects an
edited or removed entry."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from drplan import clock
from drplan.catalog.store import Catalog
from drplan.plan.loader import load_plan_text
from drplan.web.accounts import Accounts, Principal, granted
from testbed.plans import clean_plan
from tests.conftest import Result

Run = Callable[..., Result]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("DRPLAN_CATALOG", raising=False)
    return tmp_path / "catalog.db"


def add_user(
    run: Run, monkeypatch: pytest.MonkeyPatch, *args: str, password: str = PASSWORD
) -> Result:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return run("user", "add", *args, "--password-stdin")


def test_an_account_keeps_an_argon2_hash_never_the_password(
    run: Run, monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    done = add_user(
        run, monkeypatch, "alice", "--email", "alice@smartwatts.example", "--role", "ic"
    )
    assert done.code == 0, done.err
    assert PASSWORD.encode() not in state.read_bytes()
    (stored,) = sqlite3.connect(state).execute("select password from web_users").fetchone()
    assert stored.startswith("$argon2id$")
    listed = json.loads(run("user", "list", "--json").out)
    assert listed == [{"name": "alice", "email": "alice@smartwatts.example", "roles": ["ic"],
                       "access": None, "password": True, "created_at": listed[0]["created_at"]}]  # fmt: skip
    catalog = Catalog.open(f"sqlite:///{state}")
    try:
        accounts = Accounts(catalog)
        assert accounts.authenticate("alice", PASSWORD) is not None
        assert accounts.authenticate("alice", PASSWORD + "x") is None
        assert accounts.authenticate("nobody", PASSWORD) is None
    finally:
        catalog.close()


def test_account_mistakes_are_one_line_usage_errors(
    run: Run, monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    short = add_user(run, monkeypatch, "bob", password="short")
    assert (short.code, short.err.strip()) == (2, "drplan: the password is shorter than 12"
                                                  " characters; choose a longer one (a passphrase)")  # fmt: skip
    assert add_user(run, monkeypatch, "bob").code == 0
    again = add_user(run, monkeypatch, "bob")
    assert again.code == 2
    assert "user bob exists already" in again.err
    assert run("user", "remove", "carol").code == 2
    bad = add_user(run, monkeypatch, "bad name")
    assert bad.code == 2
    assert "is not a user name" in bad.err


def test_a_token_is_shown_once_stored_hashed_and_refused_once_revoked_or_expired(
    run: Run, monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    assert add_user(run, monkeypatch, "alice", "--role", "ic").code == 0
    made = run("token", "create", "ci", "--user", "alice", "--scope", "incidents:write",
               "--expires", "30d")  # fmt: skip
    assert made.code == 0, made.err
    secret = made.out.strip()
    assert secret.startswith("drplan_")
    assert "not shown again" in made.err
    assert secret.encode() not in state.read_bytes()
    assert secret.split("_")[-1] not in run("token", "list", "--json").out
    catalog = Catalog.open(f"sqlite:///{state}")
    try:
        accounts = Accounts(catalog)
        now = clock.now()
        token, why = accounts.check_token(secret, now)
        assert token is not None
        assert token.user == "alice"
        assert why == ""
        # Its last use is kept to the minute: not a catalog write per request.
        later = now + timedelta(seconds=50)
        accounts.check_token(secret, later)
        assert accounts.check_token(secret, later)[0].last_used_at == now  # type: ignore[union-attr]
        minute = now + timedelta(seconds=61)
        accounts.check_token(secret, minute)
        assert accounts.check_token(secret, minute)[0].last_used_at == minute  # type: ignore[union-attr]
        assert accounts.check_token(secret[:-1] + ("A" if secret[-1] != "A" else "B"), now) == (
            None,
            "unknown token",
        )
        assert accounts.check_token(secret, now + timedelta(days=31)) == (None, "expired")
        assert run("token", "revoke", token.id).code == 0
        assert accounts.check_token(secret, now) == (None, "revoked")
        again = run("token", "revoke", token.id)
        assert again.code == 2
        assert "revoked already" in again.err
    finally:
        catalog.close()
    for args, said in ((["--scope", "bogus"], "unknown scope bogus"),
                       (["--scope", "read", "--expires", "soon"], "--expires:")):  # fmt: skip
        refused = run("token", "create", "x", "--user", "alice", *args)
        assert refused.code == 2
        assert said in refused.err
    nobody = run("token", "create", "x", "--user", "nobody", "--scope", "read")
    assert nobody.code == 2
    assert "no user nobody" in nobody.err


def test_a_token_may_do_no_more_than_its_scopes_nor_than_its_user() -> None:
    responder = Principal("bob", ("dba",), "responder", "token t1", frozenset({"incidents:write"}))
    assert responder.may("viewer", "read")  # a write scope reads too
    assert responder.may("responder", "incidents:write")
    assert not responder.may("commander", "incidents:write")  # bob is no commander
    assert not responder.may("commander", "drills:run")
    reader = Principal("ann", ("ic",), "commander", "token t2", frozenset({"read"}))
    assert reader.may("viewer", "read")
    assert not reader.may("responder", "incidents:write")  # the scope, not the user, limits it
    session = Principal("ann", ("ic",), "commander", "session")
    assert session.may("commander", "incidents:write")
    assert not session.may("admin", "admin")


def test_roles_and_access_come_from_the_plan_by_account_email_group_and_grant() -> None:
    raw = clean_plan()
    raw["roles"]["ic"] |= {"access": "commander", "email": "ic@smartwatts.example"}
    raw["roles"]["dba"] = {"title": "DBA", "holder": "Database Administrator",
                           "members": {"groups": ["dbas"], "emails": ["Dee@Smartwatts.example"]}}  # fmt: skip
    raw["web"] = {"access": {"viewer": {"domains": ["smartwatts.example"]},
                             "admin": {"groups": ["sre-admins"]}}}  # fmt: skip
    plan = load_plan_text(json.dumps(raw), "plan.yaml").plan
    assert granted(plan, "ic@smartwatts.example", []) == (("ic",), "commander")
    assert granted(plan, "dee@smartwatts.example", []) == (("dba",), "responder")
    assert granted(plan, "zed@elsewhere.example", ["dbas"]) == (("dba",), "responder")
    assert granted(plan, "max@smartwatts.example", []) == ((), "viewer")
    assert granted(plan, "root@elsewhere.example", ["sre-admins"]) == ((), "admin")
    assert granted(plan, "eve@elsewhere.example", []) == ((), None)  # nothing: refused
    assert granted(plan, None, [], ("ic", "nonesuch")) == (("ic",), "commander")


def test_every_change_is_in_the_audit_trail_which_detects_an_edit_and_a_removal(
    run: Run, monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    assert add_user(run, monkeypatch, "alice").code == 0
    assert run("token", "create", "ci", "--user", "alice", "--scope", "read").code == 0
    assert run("user", "remove", "alice").code == 0
    entries = [json.loads(line) for line in run("audit", "list", "--json").out.splitlines()]
    assert [(e["kind"], e["data"]["user"]) for e in entries] == [
        ("user.add", "alice"),
        ("token.create", "alice"),
        ("user.remove", "alice"),
    ]
    assert all(e["actor"].startswith("cli:") for e in entries)
    assert "every link intact" in run("audit", "verify").out
    db = sqlite3.connect(state)
    db.execute("update audit_events set body = replace(body, 'alice', 'mallory') where seq = 2")
    db.commit()
    edited = run("audit", "verify")
    assert edited.code == 13
    assert "entry 2 (token.create) was edited" in edited.err
    db.execute("update audit_events set body = (select body from audit_events where seq = 2)"
               " where seq = 2")  # fmt: skip
    db.execute("delete from audit_events where seq = 2")
    db.commit()
    removed = run("audit", "verify")
    assert removed.code == 13
    assert "entry 2 says it is entry 3" in removed.err
