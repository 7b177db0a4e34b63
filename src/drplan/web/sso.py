"""The routes of an OIDC login (see :mod:`drplan.web.oidc`): ``/login/oidc`` sends the
browser to the provider, ``/login/oidc/callback`` takes it back, checks everything, and
opens a session with the roles and access the plan gives the person's e-mail and groups.
Each login and each refusal is audited."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from drplan.web.accounts import Principal, granted
from drplan.web.auth import source_of
from drplan.web.context import WebContext
from drplan.web.oidc import PENDING_COOKIE, PENDING_SECONDS, Provider
from drplan.web.pages import Dashboard, safe_next
from drplan.web.problems import Problem
from drplan.web.sessions import open_session, set_session_cookie

CALLBACK = "/login/oidc/callback"


def add_sso(app: FastAPI, ctx: WebContext, dash: Dashboard) -> None:
    providers: dict[str, Provider] = {}

    def provider() -> Provider:
        config = ctx.plan_of().web.oidc
        if config is None:
            raise Problem(404, "no OIDC login here: the plan has no web.oidc")
        if config.issuer not in providers:
            providers[config.issuer] = Provider(config)
        return providers[config.issuer]

    def callback_url(request: Request) -> str:
        base = ctx.plan_of().web.url or f"{request.url.scheme}://{request.url.netloc}"
        return base + CALLBACK

    @app.get("/login/oidc", include_in_schema=False)
    def start(request: Request, next: str = "/") -> Response:
        url, pending = provider().start(callback_url(request), safe_next(next))
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(PENDING_COOKIE, pending, max_age=PENDING_SECONDS, httponly=True,
                            samesite="lax", path="/login/oidc",
                            secure=request.url.scheme == "https")  # fmt: skip
        return response

    @app.get(CALLBACK, include_in_schema=False)
    def callback(request: Request) -> Response:
        source = source_of(request)
        try:
            claims, after = provider().finish(dict(request.query_params),
                                              request.cookies.get(PENDING_COOKIE),
                                              callback_url(request))  # fmt: skip
        except Problem as exc:
            ctx.record("(oidc login)", "login.failed", source, detail=exc.detail)
            return dash.render("login.html", None, exc.status, error=exc.detail)
        config = provider().config
        email = claims.get("email")
        groups = claims.get(config.groups_claim) or []
        name = str(email or claims["sub"])
        roles, access = granted(ctx.plan_of(), email, [str(g) for g in groups]
                                if isinstance(groups, list) else [])  # fmt: skip
        if access is None:
            ctx.record(f"{name} (oidc)", "login.refused", source)
            return dash.render("login.html", None, 403, error=f"{name} logged in at the"
                               " provider, but the plan gives them no access: an"
                               " administrator adds them to a role's members or to"
                               " web.access")  # fmt: skip
        who = Principal(name, roles, access, "session")
        cookie, _ = open_session(ctx, request, who, "oidc")
        ctx.record(f"{name} (oidc)", "login", source)
        response = RedirectResponse(after, status_code=303)
        set_session_cookie(ctx, request, response, cookie)
        response.delete_cookie(PENDING_COOKIE, path="/login/oidc")
        return response
