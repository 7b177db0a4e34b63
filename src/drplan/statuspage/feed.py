"""The status page's history as an Atom feed (RFC 4287), as Statuspage serves
``history.atom``: an entry per incident update the page shows, the newest first, so a
feed reader or a chat integration follows the page without polling its JSON."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from drplan import clock
from drplan.statuspage.state import PageState

ATOM = "http://www.w3.org/2005/Atom"
ENTRIES = 50


def atom(state: PageState, url: str) -> str:
    """The feed of ``state``'s page, served at ``url`` (the page's address)."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _text(feed, "id", url)
    _text(feed, "title", f"{state.title}: incident history")
    ET.SubElement(feed, f"{{{ATOM}}}link", href=url, rel="alternate", type="text/html")
    entries = []
    for incident in state.incidents:
        for n, update in enumerate(reversed(incident.updates), 1):
            entries.append((update["at"], f"{url}#{incident.id}-{n}", incident.name,
                            update["status"], update["body"], incident.id))  # fmt: skip
        if not incident.updates:
            entries.append((incident.started_at, f"{url}#{incident.id}", incident.name,
                            incident.status, f"{incident.name}: {incident.status}.", incident.id))  # fmt: skip
    entries.sort(key=lambda e: e[0], reverse=True)
    _text(feed, "updated", clock.rfc3339(entries[0][0] if entries else state.updated_at))
    for at, entry_id, name, status, body, anchor in entries[:ENTRIES]:
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        _text(entry, "id", entry_id)
        _text(entry, "title", f"{name}: {status.capitalize()}")
        _text(entry, "updated", clock.rfc3339(at))
        ET.SubElement(entry, f"{{{ATOM}}}link", href=f"{url}#inc-{anchor}", rel="alternate")
        _text(entry, "content", body).set("type", "text")
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    _text(author, "name", state.title)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="unicode")


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}")
    element.text = text
    return element
