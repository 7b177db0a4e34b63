"""The daemon's own routes, where they always were: ``/healthz`` (the process answers;
public), ``/readyz`` (ready to serve; public, saying why not only to those logged in),
``/metrics`` (Prometheus; needs a viewer's credentials unless the plan says
``web.public_metrics``) and ``/status`` (what ``drplan status --json`` prints)."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from drplan.web.context import WebContext
from drplan.web.problems import Problem
from drplan.web.responses import respond


def add_probes(app: FastAPI, ctx: WebContext) -> None:
    @app.get("/healthz", summary="The server answers (public).")
    def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz", summary="Ready to serve: the plan loaded, the catalog answers, the"
             " locations read once (public; why not, to those logged in).")  # fmt: skip
    def readyz(request: Request) -> Response:
        why = ctx.ready()
        if why is None:
            return Response("ready\n", media_type="text/plain")
        said = f"not ready: {why}\n" if ctx.guard.principal(request) else "not ready\n"
        return Response(said, status_code=503, media_type="text/plain")

    @app.get("/metrics", summary="Prometheus metrics (viewer, read; public when the plan says"
             " web.public_metrics).")  # fmt: skip
    def metrics(request: Request) -> Response:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest  # noqa: PLC0415

        if not ctx.plan_of().web.public_metrics:
            ctx.guard.require("viewer", "read")(request)
        if ctx.registry is None:
            raise Problem(404, "no metrics here: `drplan serve` has them, `drplan web` not")
        return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/status", summary="What `drplan status --json` prints (viewer, read).")
    def status(request: Request) -> Response:
        ctx.guard.require("viewer", "read")(request)
        found = ctx.status()
        if found is None:
            raise Problem(503, "not assessed yet: the daemon reads every location first")
        return respond(request, found)
