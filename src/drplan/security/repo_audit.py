"""The repository audit trail's format: entry objects ``audit/<seq>-<hash>``, their bodies,
and how they are named, sealed, opened and checked (docs/repository-format.md, "Audit trail").

Terms:

entry
    One operation's record in one location: an encrypted object of kind ``audit`` whose
    body is canonical JSON (who, when, what, what it touched, how it ended).
ref
    An entry as its name gives it: its ``seq`` (its place in the location's chain, from
    1) and its ``hash`` (BLAKE3 keyed with the blob-id key, of the body). A listing of
    names alone gives the chain's shape.
prev
    The refs an entry follows: the head its writer found (several after concurrent
    writers: a fork, joined here).
head
    The entries at the highest seq of a location.

Writing is :mod:`drplan.security.repo_audit_write`; verifying
:mod:`drplan.security.repo_audit_verify`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drplan.errors import IntegrityError
from drplan.repo.objects import open_object
from drplan.repo.repository import Repository
from drplan.storage import Storage

PREFIX = "audit/"
KIND = "audit"
VERSION = 1
SEQ_DIGITS = 16
# A writer lists from the block of its anchor on: ``audit/`` and a seq's first 13 digits
# name 1000 seqs, so a listing stays short however long the trail grows.
BLOCK = 1000
BLOCK_DIGITS = SEQ_DIGITS - 3
OUTCOMES = ("ok", "failed", "interrupted")
_NAME = re.compile(r"(\d{16})-([0-9a-f]{64})")
_OP = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, order=True)
class Ref:
    seq: int
    hash: str

    @property
    def name(self) -> str:
        """The entry's name after ``audit/``."""
        return f"{self.seq:0{SEQ_DIGITS}d}-{self.hash}"

    @property
    def short(self) -> str:
        return f"{self.seq} ({self.hash[:12]})"

    @classmethod
    def parse(cls, text: str) -> Ref | None:
        """The ref a name (without ``audit/``) stands for; None when it is not one."""
        match = _NAME.fullmatch(text)
        if match is None or int(match[1]) < 1:
            return None
        return cls(int(match[1]), match[2])


def where(storage: Storage) -> str:
    """The location's URL as the trail names it: a local path made absolute, so that
    ``./backups`` from one directory and ``/srv/backups`` are one location."""
    url = storage.url
    return url if "://" in url else os.path.abspath(url)


def block_prefix(seq: int) -> str:
    """The listing prefix of the block of 1000 seqs ``seq`` is in."""
    return PREFIX + f"{seq // BLOCK:0{BLOCK_DIGITS}d}"


@dataclass(frozen=True)
class Entry:
    ref: Ref
    fields: dict[str, Any]

    @property
    def prev(self) -> list[Ref]:
        return [ref for ref in map(Ref.parse, self.fields["prev"]) if ref is not None]

    @property
    def time(self) -> datetime:
        return parse_time(self.fields["time"])

    @property
    def action(self) -> str:
        """``backup web``: the operation and its subject."""
        subject = self.fields["subject"]
        return f"{self.fields['operation']} {subject}" if subject else self.fields["operation"]

    @property
    def what(self) -> str:
        """``backup web by root@db1``: the operation and who ran it, for messages."""
        return f"{self.action} by {self.fields['user']}@{self.fields['host']}"


def instant(at: datetime) -> str:
    """RFC 3339, UTC, microseconds: entries of one second stay apart."""
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def canonical(fields: dict[str, Any]) -> bytes:
    """The body as stored and hashed: keys sorted, no whitespace, ASCII only."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def seal_entry(repo: Repository, fields: dict[str, Any]) -> tuple[Ref, bytes]:
    """The ref and stored bytes of an entry holding ``fields`` (``seq`` among them)."""
    body = canonical(fields)
    return Ref(fields["seq"], repo.key.blob_id(body).hex()), repo.seal(KIND, body)


def open_entry(repo: Repository, ref: Ref, stored: bytes) -> Entry:
    """The entry ``ref`` names, from its stored bytes; IntegrityError saying what is wrong."""
    name = PREFIX + ref.name
    body = open_object(repo.key, repo.cipher, KIND, stored, name)
    try:
        fields = json.loads(body)
    except ValueError:
        raise IntegrityError(f"{name} is not JSON") from None
    problem = form_problem(fields)
    if problem is not None:
        raise IntegrityError(f"{name}: {problem}")
    if fields["seq"] != ref.seq:
        raise IntegrityError(f"{name} says it is entry {fields['seq']}: it was renamed")
    if repo.key.blob_id(body).hex() != ref.hash:
        raise IntegrityError(f"{name}: its content does not match its name's hash")
    return Entry(ref, fields)


def list_refs(storage: Storage, prefix: str = PREFIX) -> tuple[list[Ref], list[str]]:
    """The entries under ``prefix`` by name, and the names there that are no entry's."""
    refs, foreign = [], []
    for info in storage.list(prefix):
        ref = Ref.parse(info.name.removeprefix(PREFIX))
        if ref is None:
            foreign.append(info.name)
        else:
            refs.append(ref)
    return refs, foreign


def _is_int(value: object, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _is_text(value: object, optional: bool = False) -> bool:
    return isinstance(value, str) or (optional and value is None)


def form_problem(fields: object) -> str | None:
    """What makes ``fields`` no entry body of version 1 (None: it is one)."""
    if not isinstance(fields, dict):
        return "its body is not a JSON object"
    if fields.get("version") != VERSION or not _is_int(fields.get("version")):
        return f"it has audit entry version {fields.get('version')!r}; this drplan reads {VERSION}"
    prev = fields.get("prev")
    witness = fields.get("witness")
    checks = {
        "seq": _is_int(fields.get("seq"), 1),
        "prev": isinstance(prev, list) and all(isinstance(p, str) and Ref.parse(p) for p in prev),
        "op": isinstance(fields.get("op"), str) and bool(_OP.fullmatch(fields["op"])),
        "operation": isinstance(fields.get("operation"), str) and bool(fields["operation"]),
        "subject": _is_text(fields.get("subject"), optional=True),
        "host": _is_text(fields.get("host")),
        "user": _is_text(fields.get("user")),
        "pid": _is_int(fields.get("pid")),
        "program": _is_text(fields.get("program")),
        "started": _is_time(fields.get("started")),
        "time": _is_time(fields.get("time")),
        "location": _is_text(fields.get("location")),
        "url": _is_text(fields.get("url")),
        "outcome": fields.get("outcome") in OUTCOMES,
        "error": _is_text(fields.get("error"), optional=True),
        "exit_code": _is_int(fields.get("exit_code")),
        "details": isinstance(fields.get("details"), dict),
        "touched": isinstance(fields.get("touched"), dict),
        "witness": isinstance(witness, list) and all(_is_witness(w) for w in witness),
        "late": isinstance(fields.get("late"), bool),
    }
    wrong = [key for key, ok in checks.items() if not ok]
    return f"its {', '.join(wrong)} not of the audit entry's form" if wrong else None


def _is_witness(value: object) -> bool:
    return (
        isinstance(value, dict)
        and _is_text(value.get("location"))
        and _is_text(value.get("url"))
        and isinstance(value.get("head"), str)
        and Ref.parse(value["head"]) is not None
    )
