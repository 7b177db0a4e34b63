"""Sending one message to one channel, in each provider's documented format.

* Slack incoming webhook: ``{"text": fallback, "blocks": [...]}``; a 429 answer is
  retried after its ``Retry-After``.
* PagerDuty Events API v2: ``trigger`` with ``payload.summary``, ``source`` and
  ``severity``, ``resolve`` with the same ``dedup_key`` (the problem's key).
* Webhook: the event as JSON, signed with HMAC-SHA256 over ``timestamp.body`` in
  ``X-Drplan-Signature: sha256=<hex>`` when the channel has a signing secret.
* E-mail over SMTP, with STARTTLS and login when the channel says so.

Secrets (webhook URLs, keys, passwords) are resolved only here, when sending, and
never appear in errors: a failure names the channel and what went wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from drplan.clock import rfc3339
from drplan.notify.problems import Problem
from drplan.plan.model import Channel

TIMEOUT = 10.0  # seconds per request: a hanging endpoint must not hold messages up for long
MAX_RETRY_AFTER = 60.0


class SendError(Exception):
    """A message could not be delivered; the text names the channel, never a secret."""


@dataclass(frozen=True)
class Event:
    action: str  # trigger, repeat, resolve; acknowledge (PagerDuty: an incident's page)
    problem: Problem
    at: datetime
    source: str  # the host the daemon runs on


def send(name: str, channel: Channel, event: Event, timeout: float = TIMEOUT) -> None:
    """Deliver ``event`` to channel ``name`` (``timeout`` seconds per request); SendError
    when it cannot be."""
    kind = channel.kind
    with _failures(name):
        if kind == "slack":
            _slack(name, channel.webhook_url.resolve(), event, timeout)  # type: ignore[union-attr]
        elif kind == "pagerduty":
            _pagerduty(name, channel, event, timeout)
        elif kind == "webhook":
            _webhook(name, channel, event, timeout)
        elif kind == "email":
            _email(name, channel, event, timeout)
        else:
            raise SendError(f"channel {name}: a {kind} channel takes no alerts")


@contextlib.contextmanager
def _failures(name: str) -> Iterator[None]:
    """A delivery's failure as SendError naming the channel (never a URL or secret)."""
    try:
        yield
    except SendError:
        raise
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        raise SendError(f"channel {name}: {type(exc).__name__}: {_safe(exc)}") from None


@dataclass(frozen=True)
class Message:
    """A message people read (an incident's notification), as opposed to an alert."""

    key: str  # what it is about (the incident), for threading and de-duplication
    subject: str  # one line
    text: str  # the body, plain text
    at: datetime
    source: str


def send_message(name: str, channel: Channel, message: Message, timeout: float = TIMEOUT) -> None:
    """Deliver ``message`` to channel ``name``: Slack, a webhook or e-mail; SendError when
    it cannot be (a PagerDuty channel pages, it takes no messages)."""
    kind = channel.kind
    with _failures(name):
        if kind == "slack":
            blocks = [
                {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": message.text[:3000]}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text":
                    f"drplan on {message.source} · {rfc3339(message.at)} · `{message.key}`"}]},
            ]  # fmt: skip
            _post(name, channel.webhook_url.resolve(), {"text": message.subject, "blocks": blocks},  # type: ignore[union-attr]
                  timeout)  # fmt: skip
        elif kind == "webhook":
            body = {"event": "message", "key": message.key, "subject": message.subject,
                    "text": message.text, "time": rfc3339(message.at), "source": message.source}  # fmt: skip
            _post(name, channel.url.resolve(), body, timeout, _signed(channel, message.at, body))  # type: ignore[union-attr]
        elif kind == "email":
            _mail(channel, f"[drplan] {message.subject}"[:200], message.text + "\n", timeout)
        else:
            raise SendError(f"channel {name}: a {kind} channel takes no messages")


def _safe(exc: BaseException) -> str:
    """An error's text without URLs (which may carry tokens)."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    text = str(exc)
    return " ".join(w if "://" not in w else "<url>" for w in text.split())


def _post(name: str, url: str, body: dict[str, Any], timeout: float,
          headers: dict[str, str] | None = None, attempts: int = 3, method: str = "POST",
          ) -> bytes:  # fmt: skip
    """Send ``body`` as JSON; the answer's body."""
    data = json.dumps(body).encode()
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=data, method=method,
            headers={"Content-Type": "application/json", "User-Agent": "drplan", **(headers or {})},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return bytes(answer.read())
        except urllib.error.HTTPError as exc:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            if exc.code == 429 and attempt < attempts:
                time.sleep(min(float(retry_after or 1), MAX_RETRY_AFTER))
                continue
            if exc.code >= 500 and attempt < attempts:
                time.sleep(attempt)  # a passing failure of the provider
                continue
            raise SendError(f"channel {name}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError) as exc:
            if attempt < attempts:
                time.sleep(attempt)
                continue
            raise SendError(f"channel {name}: {_safe(exc)}") from None
    raise AssertionError("unreachable")  # every attempt returns or raises


def place_calls(name: str, channel: Any, message: Message, calls: list[dict[str, Any]],
                timeout: float = TIMEOUT) -> None:  # fmt: skip
    """Ask the phone channel's call service to call ``calls`` (role, holder, phone), in
    order, with ``message``: ``{"event": "call", "key", "subject", "text", "calls",
    "time", "source"}``."""
    body = {"event": "call", "key": message.key, "subject": message.subject,
            "text": message.text, "calls": calls, "time": rfc3339(message.at),
            "source": message.source}  # fmt: skip
    with _failures(name):
        _post(name, channel.webhook_url.resolve(), body, timeout)


# Statuspage (developer.statuspage.io): incident statuses, and component statuses by tier.
STATUS_OF = {"initial": "investigating", "update": "identified", "resolution": "resolved"}
COMPONENT_OF_TIER = {1: "major_outage", 2: "partial_outage", 3: "degraded_performance"}
IMPACT_OF_TIER = {1: "critical", 2: "major", 3: "minor"}


def post_status(name: str, channel: Any, message: Message, kind: str, tier: int,
                remote_id: str | None, timeout: float = TIMEOUT) -> str:  # fmt: skip
    """Open (``remote_id`` None) or update the page's incident for ``message`` through the
    Statuspage API: its status from the message's kind, its impact and its components'
    status from the tier (operational again once resolved); the page's incident id."""
    # The page's first word is always "investigating"; a resolution is "resolved".
    status = (
        STATUS_OF.get(kind, "identified") if remote_id or kind == "resolution" else "investigating"
    )
    component = (
        "operational" if status == "resolved" else COMPONENT_OF_TIER.get(tier, "major_outage")
    )
    incident: dict[str, Any] = {
        "name": message.subject[:255], "status": status, "body": message.text,
        "impact_override": IMPACT_OF_TIER.get(tier, "major"),
        "component_ids": list(channel.components),
        "components": dict.fromkeys(channel.components, component),
        "deliver_notifications": True,
    }  # fmt: skip
    base = f"{channel.api_url.rstrip('/')}/v1/pages/{channel.page_id}/incidents"
    headers = {"Authorization": f"OAuth {channel.api_key.resolve()}"}
    with _failures(name):
        if remote_id is None:
            answer = _post(name, base, {"incident": incident}, timeout, headers)
        else:
            answer = _post(name, f"{base}/{remote_id}", {"incident": incident}, timeout,
                           headers, method="PATCH")  # fmt: skip
    try:
        found = json.loads(answer)["id"]
    except (ValueError, KeyError, TypeError):
        raise SendError(f"channel {name}: the status page's answer has no incident id") from None
    return str(found)


def _title(event: Event) -> str:
    p = event.problem
    if event.action == "resolve":
        return f"Resolved: {p.summary}"
    prefix = "Still open" if event.action == "repeat" else p.severity.value.upper()
    return f"{prefix}: {p.summary}"


def _slack(name: str, url: str, event: Event, timeout: float) -> None:
    p = event.problem
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in p.details.items() if v][:10]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _title(event)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": p.summary[:3000]}},
    ]
    if fields and event.action != "resolve":
        blocks.append({"type": "section", "fields": fields})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"drplan on {event.source} · {rfc3339(event.at)} · `{p.key}`"}
    ]})  # fmt: skip
    _post(name, url, {"text": _title(event), "blocks": blocks}, timeout)


PAGERDUTY_SEVERITIES = {
    "critical": "critical",
    "error": "error",
    "warning": "warning",
    "info": "info",
}


def _pagerduty(name: str, channel: Any, event: Event, timeout: float) -> None:
    p = event.problem
    body: dict[str, Any] = {
        "routing_key": channel.routing_key.resolve(),
        "dedup_key": p.key,
        "event_action": event.action if event.action in ("resolve", "acknowledge") else "trigger",
    }
    if body["event_action"] == "trigger":
        body["payload"] = {
            "summary": p.summary[:1024],
            "source": event.source,
            "severity": PAGERDUTY_SEVERITIES[p.severity.value],
            "timestamp": rfc3339(event.at),
            "component": p.details.get("data class") or p.details.get("job") or "drplan",
            "group": p.details.get("location") or p.details.get("system") or "drplan",
            "class": p.key.split(":", 1)[0],
            "custom_details": p.details,
        }
    _post(name, channel.events_url, body, timeout)


def _webhook(name: str, channel: Any, event: Event, timeout: float) -> None:
    p = event.problem
    body = {
        "event": event.action,
        "problem": p.key,
        "severity": p.severity.value,
        "summary": p.summary,
        "details": p.details,
        "time": rfc3339(event.at),
        "source": event.source,
    }
    _post(name, channel.url.resolve(), body, timeout, _signed(channel, event.at, body))


def post_json(name: str, channel: Any, body: dict[str, Any], at: datetime,
              timeout: float = TIMEOUT) -> None:  # fmt: skip
    """POST ``body`` as it is to a webhook channel, signed as its messages are."""
    with _failures(name):
        _post(name, channel.url.resolve(), body, timeout, _signed(channel, at, body))


def _signed(channel: Any, at: datetime, body: dict[str, Any]) -> dict[str, str]:
    """The signature headers of a webhook with a signing secret (none without one)."""
    if channel.signing_secret is None:
        return {}
    stamp = str(int(at.timestamp()))
    payload = stamp.encode() + b"." + json.dumps(body).encode()
    digest = hmac.new(channel.signing_secret.resolve().encode(), payload, hashlib.sha256)
    return {"X-Drplan-Timestamp": stamp, "X-Drplan-Signature": f"sha256={digest.hexdigest()}"}


def _email(name: str, channel: Any, event: Event, timeout: float) -> None:
    lines = [event.problem.summary, ""]
    lines += [f"{k}: {v}" for k, v in event.problem.details.items() if v]
    lines += ["", f"problem {event.problem.key}, {rfc3339(event.at)}, drplan on {event.source}"]
    _mail(channel, f"[drplan] {_title(event)}"[:200], "\n".join(lines) + "\n", timeout)


def _mail(channel: Any, subject: str, text: str, timeout: float) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message.set_content(text)
    with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=timeout) as smtp:
        if channel.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if channel.username:
            secret = channel.password.resolve() if channel.password else ""
            smtp.login(channel.username, secret)
        smtp.send_message(message)
