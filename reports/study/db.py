"""Study answers in SQLite (WAL): raters, their per-rater randomized assignment, and answers.
The primary keys enforce "each rater answers each pair at most once"; the file lives in the study
folder, so answers survive a server restart."""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DB_NAME = "answers.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
  rater_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
  rater_id TEXT NOT NULL REFERENCES raters(rater_id), position INTEGER NOT NULL, pair_id TEXT NOT NULL,
  left_item TEXT NOT NULL CHECK (left_item IN ('a', 'b')),
  PRIMARY KEY (rater_id, position), UNIQUE (rater_id, pair_id));
CREATE TABLE IF NOT EXISTS answers (
  rater_id TEXT NOT NULL REFERENCES raters(rater_id), pair_id TEXT NOT NULL,
  side TEXT NOT NULL CHECK (side IN ('left', 'right')), chosen TEXT NOT NULL CHECK (chosen IN ('a', 'b')),
  ms INTEGER, answered REAL NOT NULL, PRIMARY KEY (rater_id, pair_id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class DuplicateAnswer(Exception):
    pass


class NotAssigned(Exception):
    pass


class StudyFull(Exception):
    pass


@dataclass(frozen=True)
class Trial:
    position: int
    pair_id: str
    left_item: str  # 'a' or 'b'


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


class StudyDB:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript(SCHEMA)

    @contextmanager
    def _conn(self):
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no committed answer's integrity
        try:
            yield conn
        finally:
            conn.close()

    def create_rater(self, test_pairs: list[str], catch_pairs: list[str], per_rater: int | None,
                     seed: int, max_raters: int | None = None) -> tuple[str, str]:
        """New rater with a balanced random subset of test pairs (fewest assignments first) plus all
        catch trials, shuffled, each with a random left/right. Returns (rater_id, secret). Raises
        StudyFull when the study already has max_raters (counted in the same transaction, so
        concurrent requests cannot overshoot it)."""
        rater_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
        rng = random.Random(f"{seed}:{rater_id}")
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                if max_raters is not None and c.execute("SELECT COUNT(*) FROM raters").fetchone()[0] >= max_raters:
                    raise StudyFull(max_raters)
                counts = dict(c.execute("SELECT pair_id, COUNT(*) FROM assignments GROUP BY pair_id").fetchall())
                chosen = list(test_pairs)
                if per_rater is not None and per_rater < len(chosen):
                    rng.shuffle(chosen)
                    chosen.sort(key=lambda p: counts.get(p, 0))  # stable: random among equally-used pairs
                    chosen = chosen[:per_rater]
                trials = chosen + list(catch_pairs)
                rng.shuffle(trials)
                c.execute("INSERT INTO raters VALUES (?, ?, ?)", (rater_id, _sha(secret), time.time()))
                c.executemany("INSERT INTO assignments VALUES (?, ?, ?, ?)",
                              [(rater_id, i, p, rng.choice("ab")) for i, p in enumerate(trials)])
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return rater_id, secret

    def check_rater(self, rater_id: str, secret: str) -> bool:
        with self._conn() as c:
            row = c.execute("SELECT secret_sha256 FROM raters WHERE rater_id = ?", (rater_id,)).fetchone()
        return row is not None and hmac.compare_digest(row[0], _sha(secret))

    def progress(self, rater_id: str) -> tuple[int, int, Trial | None]:
        """(answered, total, next unanswered trial or None)."""
        with self._conn() as c:
            total = c.execute("SELECT COUNT(*) FROM assignments WHERE rater_id = ?", (rater_id,)).fetchone()[0]
            done = c.execute("SELECT COUNT(*) FROM answers WHERE rater_id = ?", (rater_id,)).fetchone()[0]
            row = c.execute(
                "SELECT position, pair_id, left_item FROM assignments a WHERE rater_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM answers b WHERE b.rater_id = a.rater_id AND b.pair_id = a.pair_id) "
                "ORDER BY position LIMIT 1", (rater_id,)).fetchone()
        return done, total, Trial(*row) if row else None

    def record(self, rater_id: str, pair_id: str, side: str, ms: int | None) -> str:
        """Store one answer; returns the chosen item ('a'/'b'). Raises NotAssigned, DuplicateAnswer."""
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute("SELECT left_item FROM assignments WHERE rater_id = ? AND pair_id = ?",
                                (rater_id, pair_id)).fetchone()
                if row is None:
                    raise NotAssigned(pair_id)
                left = row[0]
                chosen = left if side == "left" else ("b" if left == "a" else "a")
                try:
                    c.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                              (rater_id, pair_id, side, chosen, ms, time.time()))
                except sqlite3.IntegrityError as err:
                    raise DuplicateAnswer(pair_id) from err
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return chosen

    def image_key(self) -> bytes:
        """The study's secret for image tokens, made once and kept with the answers (a restarted
        server gives a page it already loaded the same image addresses)."""
        with self._conn() as c:
            c.execute("INSERT OR IGNORE INTO meta VALUES ('image_key', ?)", (secrets.token_hex(32),))
            return bytes.fromhex(c.execute("SELECT value FROM meta WHERE key = 'image_key'").fetchone()[0])

    def assignment(self, rater_id: str) -> list[tuple[str, str]]:
        """(pair_id, left_item) of each pair assigned to the rater."""
        with self._conn() as c:
            return c.execute("SELECT pair_id, left_item FROM assignments WHERE rater_id = ? ORDER BY position",
                             (rater_id,)).fetchall()

    def assigned_pair_ids(self) -> set[str]:
        with self._conn() as c:
            return {r[0] for r in c.execute("SELECT DISTINCT pair_id FROM assignments")}

    def answers(self) -> list[tuple[str, str, str, str, int | None, float]]:
        with self._conn() as c:
            return c.execute("SELECT rater_id, pair_id, side, chosen, ms, answered FROM answers "
                             "ORDER BY answered").fetchall()

    def raters(self) -> list[str]:
        with self._conn() as c:
            return [r[0] for r in c.execute("SELECT rater_id FROM raters ORDER BY created")]
