"""Self-contained HTML: one file, figures embedded as data URIs, no scripts, no external assets."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from reports.document import Document
from reports.tables import Cell, Table

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 .3em;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #444}
td .sub{display:block;color:#777;font-size:11px}
td.best{font-weight:bold}
td.tied{text-decoration:underline}
.note{color:#555;font-size:12px;margin:0 0 1.5em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:12px}
.wide{overflow-x:auto}
"""


def cell_html(c: Cell, tag: str = "td") -> str:
    cls = ' class="best"' if c.bold else ' class="tied"' if c.tied else ""
    sub = f'<span class="sub">{html.escape(c.sub)}</span>' if c.sub else ""
    return f"<{tag}{cls}>{html.escape(c.text)}{sub}</{tag}>"


def table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(cell_html(c) for c in row) + "</tr>" for row in t.rows)
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in t.notes)
    return (f'<h3 id="{html.escape(t.key)}">{html.escape(t.title)}</h3><div class="wide"><table>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{notes}")


def _img_src(report_dir: Path, rel: str, embed: bool) -> str:
    if not embed:
        return html.escape(rel)
    data = (report_dir / rel).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render_html(doc: Document, report_dir: Path, embed: bool = True) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(doc.title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(doc.title)}</h1><ul>"]
    parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in doc.info]
    parts.append("</ul>")
    for sec in doc.sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in sec.text]
        parts += [table_html(t) for t in sec.tables]
        for f in sec.figures:
            parts.append(f'<figure><img src="{_img_src(report_dir, f.path, embed)}" alt="{html.escape(f.caption)}">'
                         f"<figcaption>{html.escape(f.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
