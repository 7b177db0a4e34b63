"""How the API answers: JSON with an ETag (304 when the client holds it), pages of a list
with a link to the next, an incident as `drplan incident status --json` shows it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from fastapi import Request, Response

from drplan import clock
from drplan.errors import DrplanError
from drplan.web.problems import Problem


def respond(request: Request, data: Any, headers: dict[str, str] | None = None,
            status: int = 200) -> Response:  # fmt: skip
    """``data`` as JSON with its ETag; 304 when the client holds it already."""
    body = json.dumps(data, default=_jsonable, sort_keys=True).encode()
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    extra = {"ETag": tag, "Cache-Control": "private, no-cache", **(headers or {})}
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=extra)
    return Response(body, media_type="application/json", headers=extra, status_code=status)


def page(request: Request, items: list[Any], limit: int, offset: int) -> Response:
    """One page of ``items``, with a link to the next while there is more."""
    chosen = items[offset : offset + limit]
    headers = {"X-Total-Count": str(len(items))}
    if offset + limit < len(items):
        following = request.url.include_query_params(offset=offset + limit, limit=limit)
        headers["Link"] = f'<{following}>; rel="next"'
    return respond(request, {"items": chosen, "total": len(items), "offset": offset,
                             "limit": limit}, headers)  # fmt: skip


def _jsonable(value: Any) -> Any:
    from datetime import datetime  # noqa: PLC0415

    if isinstance(value, datetime):
        return clock.rfc3339(value)
    return str(value)


def incident_view(incident: Any, now: datetime) -> dict[str, Any]:
    from drplan.incidents.predict import predict  # noqa: PLC0415
    from drplan.incidents.view import status as view  # noqa: PLC0415

    return view(incident, predict(incident, now), now)


def load_incident(service: Any, incident: str) -> Any:
    try:
        return service.load(incident)
    except DrplanError as exc:
        raise Problem(404, exc.message) from None


def download(text: str, fmt: str, name: str) -> Response:
    """A report as a file to save (Markdown or HTML): the HTML has its own styles, which
    this site's policy would not let it show inline."""
    kind = "text/html" if fmt == "html" else "text/markdown"
    return Response(text, media_type=f"{kind}; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})  # fmt: skip
