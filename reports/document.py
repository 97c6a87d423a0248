"""The report as plain data, shared by the Markdown, HTML and LaTeX renderers."""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.tables import Table


@dataclass
class Figure:
    path: str  # relative to the report folder
    caption: str


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Document:
    title: str
    info: list[tuple[str, str]]
    sections: list[Section]
