"""Markdown rendering: GitHub-flavoured tables, images as relative links."""

from __future__ import annotations

from reports.document import Document
from reports.tables import Cell, Table


def _esc(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def cell_md(c: Cell) -> str:
    main = f"**{_esc(c.text)}**" if c.bold and c.text else _esc(c.text)
    return f"{main} <sub>{_esc(c.sub)}</sub>" if c.sub else main


def table_md(t: Table) -> str:
    lines = [f"### {t.title}", "", "| " + " | ".join(_esc(c) for c in t.columns) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(t.columns) - 1)) + "|"]
    lines += ["| " + " | ".join(cell_md(c) for c in row) + " |" for row in t.rows]
    lines += [""] + [f"_{_esc(n)}_  " for n in t.notes]
    return "\n".join(lines) + "\n"


def render_md(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    out += [f"- **{k}**: {_esc(v)}" for k, v in doc.info] + [""]
    for sec in doc.sections:
        out += [f"## {sec.title}", ""]
        out += [p + "\n" for p in sec.text]
        out += [table_md(t) for t in sec.tables]
        for f in sec.figures:
            out += [f"![{_esc(f.caption)}]({f.path})", "", f"_{_esc(f.caption)}_", ""]
    return "\n".join(out)
