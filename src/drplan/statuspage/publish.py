"""The status page's static copy: the page (its stylesheet inside) and the Statuspage
JSON, written under ``status-page/`` to every S3 location the plan names, with the
content types a bucket set up as a website serves them with. Written at every change of
the page (the daemon looks every ``LOOK_EVERY`` seconds), so that customers still read
it when the site that serves the live page is gone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from drplan.errors import DrplanError
from drplan.statuspage import formats
from drplan.statuspage.feed import atom
from drplan.statuspage.state import PageState

if TYPE_CHECKING:
    from drplan.plan.model import Plan
    from drplan.storage import Storage

PREFIX = "status-page/"
LOOK_EVERY = 5.0  # seconds between the daemon's looks for a change to publish
HERE = Path(__file__).parent
CSS = HERE.parent / "web" / "static" / "drplan.css"
PAST = 20


def environment() -> Environment:
    return Environment(loader=FileSystemLoader(HERE / "templates"),
                       autoescape=select_autoescape(default=True), auto_reload=False)  # fmt: skip


def render_page(
    env: Environment, state: PageState, json_href: str, css: str | None,
    feed_href: str = "history.atom",
) -> str:  # fmt: skip
    """The page for people (``css``: the stylesheet inside it, for a copy served alone)."""
    return env.get_template("status_page.html").render(
        state=state, overall=formats.status(state)["description"], worst=state.worst,
        active=[i for i in state.incidents if i.status != "resolved"],
        past=[i for i in state.incidents if i.status == "resolved"][:PAST],
        json_href=json_href, css=css, feed_href=feed_href,
    )  # fmt: skip


def static_files(state: PageState, url: str) -> dict[str, tuple[bytes, str]]:
    """Every file of the copy: name, content and content type."""

    def as_json(data: Any) -> tuple[bytes, str]:
        return json.dumps(data, indent=1).encode(), "application/json"

    page = formats.page(state, url)
    html = render_page(environment(), state, "summary.json", CSS.read_text())
    return {
        "index.html": (html.encode(), "text/html; charset=utf-8"),
        "summary.json": as_json(formats.summary(state, url)),
        "status.json": as_json({"page": page, "status": formats.status(state)}),
        "components.json": as_json({"page": page, "components": formats.components(state)}),
        "incidents.json": as_json({"page": page,
                                   "incidents": [formats.incident(i) for i in state.incidents[:50]]}),
        "history.atom": (atom(state, url).encode(), "application/atom+xml"),
    }  # fmt: skip


def publish(plan: Plan, state: PageState, open_storage: Callable[[str], Storage]) -> list[str]:
    """Write the copy to every location of ``status_page.publish_to``; what could not be
    written, one line per location (the others are written all the same)."""
    assert plan.status_page is not None
    url = plan.web.url + "/status-page" if plan.web.url else ""
    files = static_files(state, url)
    failed = []
    for name in plan.status_page.publish_to:
        try:
            storage = open_storage(name)
            # The JSON first, the page last: a reader never gets a page newer than its data.
            for file in sorted(files, key=lambda f: f == "index.html"):
                data, kind = files[file]
                storage.write(PREFIX + file, data, content_type=kind)
        except DrplanError as exc:
            failed.append(f"location {name}: {exc.message}")
    return failed


class Publisher:
    """The daemon's: publish when the page changed since it was last published."""

    def __init__(self, plan: Callable[[], Plan],
                 open_storage: Callable[[Plan, str], Storage]) -> None:  # fmt: skip
        self.plan, self.open_storage = plan, open_storage
        self.published: str | None = None

    def tick(self, found: PageState) -> list[str]:
        """Publish ``found`` if the page changed; what failed (tried again at the next)."""
        plan = self.plan()
        if plan.status_page is None or not plan.status_page.publish_to:
            return []
        # What customers read, without the times of the looks: a new look is no change.
        # A new day is a change: the 90 days' bars move on.
        key = json.dumps({"components": [(c.name, c.state) for c in found.components],
                          "incidents": [formats.incident(i) for i in found.incidents],
                          "day": found.updated_at.date()}, sort_keys=True, default=str)  # fmt: skip
        if key == self.published:
            return []
        failed = publish(plan, found, lambda name: self.open_storage(plan, name))
        if not failed:
            self.published = key
        return failed
