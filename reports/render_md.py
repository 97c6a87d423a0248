"""Markdown rendering: GitHub-flavoured tables, images as relative links."""

from __future__ import annotations

from reports.document import Document
from reports.tables import Cell, Table

# Every string from a run (dataset, scene and method names, error messages) is text, never markup:
# HTML specials as entities (no raw <script> in a renderer that passes HTML through), Markdown's
# code/link/table/emphasis specials backslash-escaped, line breaks and control characters as spaces.
_MD = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "`": "\\`", "|": "\\|", "[": "\\[", "]": "\\]",
       "*": "\\*", "_": "\\_", "~": "\\~"}


def _esc(s: str, brackets: bool = True) -> str:
    table = _MD if brackets else {k: v for k, v in _MD.items() if k not in "[]"}
    s = str(s)

    def one(i: int, ch: str) -> str:
        if ch == "_" and 0 < i < len(s) - 1 and s[i - 1].isalnum() and s[i + 1].isalnum():
            return ch  # inside a word `_` is no emphasis: rmse_full stays as it is
        return table.get(ch, " " if ch.isspace() or ord(ch) < 32 or ord(ch) == 127 else ch)

    text = "".join(one(i, ch) for i, ch in enumerate(s))
    return "\\" + text if text.startswith("#") else text  # not a heading where it starts a line


def cell_md(c: Cell) -> str:
    main = f"**{_esc(c.text)}**" if c.bold and c.text else _esc(c.text)
    if c.tied and c.text:  # GitHub keeps <ins> (underlined); it strips <u>
        main = f"<ins>{main}</ins>"
    # a sub-line is the tables' own statistics text ("[lo, hi] n=4"): its brackets stay readable
    return f"{main} <sub>{_esc(c.sub, brackets=False)}</sub>" if c.sub else main


def table_md(t: Table) -> str:
    lines = [f"### {_esc(t.title)}", "", "| " + " | ".join(_esc(c) for c in t.columns) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(t.columns) - 1)) + "|"]
    lines += ["| " + " | ".join(cell_md(c) for c in row) + " |" for row in t.rows]
    lines += [""] + [f"_{_esc(n)}_  " for n in t.notes]
    return "\n".join(lines) + "\n"


def render_md(doc: Document) -> str:
    out = [f"# {_esc(doc.title)}", ""]
    out += [f"- **{_esc(k)}**: {_esc(v)}" for k, v in doc.info] + [""]
    for sec in doc.sections:
        out += [f"## {_esc(sec.title)}", ""]
        out += [_esc(p) + "\n" for p in sec.text]
        out += [table_md(t) for t in sec.tables]
        for f in sec.figures:
            out += [f"![{_esc(f.caption)}]({f.path})", "", f"_{_esc(f.caption)}_", ""]
    return "\n".join(out)
