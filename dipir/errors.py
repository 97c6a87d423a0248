"""User-facing errors: one line that names the file and the field, never a traceback."""

from __future__ import annotations

from pathlib import Path


class DipirError(Exception):
    """An error caused by the user's input. The CLI prints `str(err)` as one line.

    `path` is the file at fault and `field` the key, column or record offset inside it.
    """

    def __init__(self, message: str, path: str | Path | None = None, field: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.path or ""
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        return f"{where}: {self.message}" if where else self.message


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type name when it has none), for quoting a
    library's error inside a one-line DipirError; cut to `limit` characters with "..."."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return first if limit is None or len(first) <= limit else first[:limit - 3] + "..."
