"""What each request may do: who it comes from (a bearer token, or a session cookie set at
login), whether their access and the token's scopes are enough, the CSRF token every
change made from a session must carry, and the throttle on failed logins.

A request without credentials is answered 401 (with ``WWW-Authenticate``), one whose
credentials are not enough 403; both say what is missing, never whether an account or a
token exists. A session's change is refused without its CSRF token: a cookie alone (which
a browser sends from any page) proves nothing. Tokens need none: no browser sends them.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import Request

from drplan.web.accounts import Accounts, Principal, rank
from drplan.web.problems import Problem

if TYPE_CHECKING:
    from drplan.plan.model import Plan
    from drplan.plan.model.web import Access

SESSION_COOKIE = "drplan_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
THROTTLE_WINDOW = 15 * 60.0  # seconds over which failed logins are counted


@dataclass
class LoginThrottle:
    """Failed logins per key (an account, an address) over THROTTLE_WINDOW: past the
    plan's ``web.login_attempts`` the next one waits. Kept in this process: a second host
    serving the dashboard counts its own."""

    limit: int
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def wait(self, keys: list[str]) -> float:
        """Seconds until a login for ``keys`` is heard again (0: now)."""
        now = self.clock()
        longest = 0.0
        for key in keys:
            seen = self._recent(key, now)
            if len(seen) >= self.limit:
                longest = max(longest, seen[0] + THROTTLE_WINDOW - now)
        return longest

    def failed(self, keys: list[str]) -> None:
        now = self.clock()
        for key in keys:
            self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(key, deque())
        while seen and seen[0] <= now - THROTTLE_WINDOW:
            seen.popleft()
        return seen


class Guard:
    """Who a request comes from, and the dependencies that refuse it."""

    def __init__(self, accounts: Accounts, plan: Callable[[], Plan],
                 now: Callable[[], datetime]) -> None:  # fmt: skip
        self.accounts = accounts
        self.plan = plan
        self.now = now

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() == "bearer" and presented:
            token, _why = self.accounts.check_token(presented.strip(), self.now())
            if token is None:
                return None
            user = self.accounts.user(token.user)
            if user is None:
                return None
            return self.accounts.principal(self.plan(), user, f"token {token.id}",
                                           scopes=frozenset(token.scopes))  # fmt: skip
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return self.accounts.session(self.plan(), cookie, self.now())
        return None

    def require(self, needed: Access, scope: str) -> Callable[[Request], Principal]:
        """A dependency: the principal, when it may do what needs ``needed`` and
        ``scope``; otherwise 401 or 403."""

        def dependency(request: Request) -> Principal:
            who = self.principal(request)
            if who is None:
                raise Problem(401, "log in, or send an API token: `Authorization: Bearer"
                              " drplan_...` (`drplan token create`)")  # fmt: skip
            if not who.may(needed, scope):
                what = (f"it needs {needed} access; {who.name} has {who.access}"
                        if rank(who.access) < rank(needed)
                        else f"the token's scopes ({' '.join(sorted(who.scopes or ()))}) do not"
                        f" include {scope}")  # fmt: skip
                raise Problem(403, f"not allowed: {what}")
            if who.via == "session" and request.method not in SAFE_METHODS:
                presented = request.headers.get(CSRF_HEADER, "")
                if not (who.csrf and hmac.compare_digest(presented, who.csrf)):
                    raise Problem(403, "not allowed: the request lacks the session's CSRF token"
                                  " (reload the page and try again)")  # fmt: skip
            request.state.principal = who
            return who

        return dependency


def source_of(request: Request) -> str:
    """Where a request came from, for the audit trail and the login throttle (the proxy's
    client only when the proxy is trusted: uvicorn sees to that)."""
    return request.client.host if request.client else "unknown"
