"""Reports as people read them: markdown, and the same as one self-contained HTML page
(inline style and figures; no scripts, nothing fetched), for drill and incident reports."""

from __future__ import annotations

import html


def html_page(markdown: str, title: str, figures: dict[str, str] | None = None) -> str:
    """``markdown`` (headings, tables, paragraphs) as an HTML page; ``figures`` (inline
    SVG) follow the ``## `` heading they are keyed by."""
    body, table = [], False
    for line in markdown.splitlines():
        if table and not line.startswith("|"):
            body.append("</table>")
            table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
            body.append((figures or {}).get(line[3:], ""))
        elif line.startswith("|---"):
            continue
        elif line.startswith("| "):
            cells = [html.escape(c.strip().replace("\\|", "|"))
                     for c in line.strip("|").split(" | ")]  # fmt: skip
            tag = "td" if table else "th"
            if not table:
                body.append("<table>")
                table = True
            body.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    if table:
        body.append("</table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "svg{margin:1em 0;font-family:sans-serif;font-size:12px}")  # fmt: skip
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{style}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")  # fmt: skip
