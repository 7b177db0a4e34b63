"""Errors as RFC 9457 problem details (``application/problem+json``): a status, a title
that names the kind of problem, and a detail that says what is wrong and what to do, the
way the CLI's one-line errors do. Never a traceback, never a secret."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from drplan.errors import (
    CatalogError,
    DrplanError,
    IncidentStateError,
    IntegrityError,
    LocationDownError,
    PlanInvalidError,
    SecretMissingError,
    UsageError,
)

MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 412: "Precondition failed",
    422: "Invalid request", 429: "Too many requests", 500: "Internal error",
    503: "Unavailable",
}  # fmt: skip


# drplan's exit codes (docs/cli.md) as HTTP statuses.
STATUS_OF = {
    UsageError.exit_code: 400, IncidentStateError.exit_code: 409,
    PlanInvalidError.exit_code: 409, SecretMissingError.exit_code: 503,
    CatalogError.exit_code: 503, LocationDownError.exit_code: 503,
    IntegrityError.exit_code: 500,
}  # fmt: skip


class Problem(Exception):
    """Raised by a route: answered as a problem document."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:  # fmt: skip
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra


def problem(request: Request, status: int, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:  # fmt: skip
    if status == 401:  # RFC 9110: a 401 says how to authenticate
        headers = {"WWW-Authenticate": 'Bearer realm="drplan"', **(headers or {})}
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, "instance": request.url.path, **extra}  # fmt: skip
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem(request, exc.status, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(DrplanError)
    async def _drplan(request: Request, exc: DrplanError) -> JSONResponse:
        # The request's mistake (an unknown role, a step out of order) is 400; what the
        # state of things refuses (a resolution with systems not recovered) 409; the
        # catalog or a location not answering 503; anything else a failure of ours.
        status = STATUS_OF.get(exc.exit_code, 500)
        said = f"{exc.message}; {exc.hint}" if exc.hint else exc.message
        return problem(request, status, said, exit_code=exc.exit_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"where": ".".join(str(p) for p in e.get("loc", ())), "what": e.get("msg")}
                  for e in exc.errors()]  # fmt: skip
        first = errors[0] if errors else {"where": "", "what": "invalid"}
        return problem(request, 422, f"{first['where']}: {first['what']}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        return problem(request, exc.status_code, detail, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        import logging  # noqa: PLC0415

        logging.getLogger("drplan.web").exception("internal error on %s", request.url.path)
        return problem(request, 500, "internal error: the server's log says more")
