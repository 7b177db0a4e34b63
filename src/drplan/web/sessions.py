"""Logging in: the throttle asked first, the password checked, the failure audited; then
a new session (never the one the request came with: fixation), its cookie set HttpOnly,
SameSite=Lax, and Secure unless the server is reached over plain HTTP on loopback."""

from __future__ import annotations

from fastapi import Request, Response

from drplan.web.accounts import Principal
from drplan.web.auth import SESSION_COOKIE, source_of
from drplan.web.context import WebContext
from drplan.web.problems import Problem


def log_in(ctx: WebContext, request: Request, name: str, password: str
           ) -> tuple[str, Principal, str]:  # fmt: skip
    """The new session's cookie value, who it is, and its CSRF token; Problem 429 while
    throttled, 401 for a wrong name or password (the same for both)."""
    source = source_of(request)
    keys = [f"user:{name}", f"address:{source}"]
    wait = ctx.throttle.wait(keys)
    if wait > 0:
        raise Problem(429, f"too many failed logins: try again in {wait:.0f} s",
                      {"Retry-After": str(int(wait) + 1)})  # fmt: skip
    user = ctx.accounts.authenticate(name, password)
    if user is None:
        ctx.throttle.failed(keys)
        ctx.record(f"{name[:64]} (login)", "login.failed", source)
        raise Problem(401, "wrong name or password")
    ctx.throttle.succeeded(keys[0])
    who = ctx.accounts.principal(ctx.plan_of(), user, "session")
    assert who is not None
    cookie, csrf = open_session(ctx, request, who, "local")
    ctx.record(who, "login", source)
    return cookie, who, csrf


def open_session(ctx: WebContext, request: Request, who: Principal, origin: str
                 ) -> tuple[str, str]:  # fmt: skip
    """A new session for ``who`` (``origin``: local, oidc): its cookie's value and CSRF
    token. The session the request came with ends (fixation)."""
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        ctx.accounts.close_session(old)
    return ctx.accounts.open_session(who, origin, source_of(request), ctx.now(),
                                     ctx.plan_of().web.session_lifetime)  # fmt: skip


def set_session_cookie(ctx: WebContext, request: Request, response: Response,
                       cookie: str) -> None:  # fmt: skip
    lifetime = ctx.plan_of().web.session_lifetime
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(lifetime.total_seconds()),
                        httponly=True, samesite="lax", secure=_secure(request), path="/")  # fmt: skip


def _secure(request: Request) -> bool:
    """Secure cookies, except over plain HTTP on loopback (nothing leaves the machine,
    and a browser may drop a Secure cookie there)."""
    if request.url.scheme == "https":
        return True
    return request.url.hostname not in ("127.0.0.1", "localhost", "::1")
