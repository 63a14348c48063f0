"""A damaged journal never stops the hub: checked at start, moved aside, salvaged later.

A journal page overwritten while the hub was off (an SD card fault, a bad shutdown of a
card without power-loss protection) used to be found by the prune loop hours later, and
the daemon then exited with a raw traceback, again on every restart. Now:

- :func:`open_checked` runs ``PRAGMA quick_check`` when the daemon starts (O(pages), no
  index cross-check: seconds on a Pi for a journal within its budget). A journal that
  fails it, or cannot be opened at all, is renamed aside (``journal.db.damaged-<UTC>``,
  with its -wal and -shm) with a critical log line, and a fresh journal is started so
  the hub keeps recording; the daemon raises its critical ``journal_damaged`` alert.
- ``coldchain journal salvage DAMAGED [--into JOURNAL]`` (:func:`salvage`) copies what
  can still be read into a journal (SQLite's own ``.recover`` through the ``sqlite3``
  shell, which walks every readable page, or row by row when the shell is missing),
  and reports what was recovered and what was lost, table by table.
- :func:`integrity_problems` (``PRAGMA integrity_check``) is what ``coldchain verify``
  runs before it says anything about a journal: it never says OK for a file it cannot
  read.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from gateway.core.errors import JournalError
from gateway.journal.store import Journal

log = logging.getLogger(__name__)

DAMAGED_RULE: Final = "journal_damaged"
_SIDE_FILES: Final = ("-wal", "-shm")
# Tables whose rows are copied by salvage, in this order (ids are kept).
SALVAGE_TABLES: Final = ("readings", "dead_letters", "gateway_health", "cursors", "meta")


@dataclass(frozen=True, slots=True)
class Damage:
    """A journal found damaged at start and moved aside."""

    moved_to: Path
    problems: list[str]


def integrity_problems(path: Path, *, quick: bool = False, limit: int = 20) -> list[str]:
    """What ``PRAGMA integrity_check`` (or ``quick_check``) finds; [] when the file is sound.

    A file that cannot be opened or read as a database is a problem too, never "OK".
    """
    pragma = "quick_check" if quick else "integrity_check"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute(f"PRAGMA {pragma}({int(limit)})").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [f"cannot read {path}: {exc}"]
    found = [str(r[0]) for r in rows]
    return [] if found == ["ok"] else found


def open_checked(
    path: Path, synchronous: Literal["full", "normal"] = "full", now: datetime | None = None
) -> tuple[Journal, Damage | None]:
    """Open the daemon's journal after a quick_check; a damaged one is moved aside."""
    problems: list[str] = []
    if path.is_file():
        problems = integrity_problems(path, quick=True)
    if not problems:
        try:
            return Journal(path, synchronous), None
        except JournalError as exc:
            problems = [str(exc)]
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    moved = path.with_name(f"{path.name}.damaged-{stamp}")
    path.replace(moved)
    for suffix in _SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.replace(moved.with_name(moved.name + suffix))
    log.critical(
        "journal %s is damaged (%s); moved aside to %s, recording into a fresh journal;"
        " recover what is readable with: coldchain journal salvage %s --into %s",
        path,
        "; ".join(problems)[:300],
        moved,
        moved,
        path,
    )
    return Journal(path, synchronous), Damage(moved, problems)


@dataclass(slots=True)
class SalvageReport:
    """Rows per table: found readable in the damaged file, and copied into the journal."""

    method: str
    readable: dict[str, int] = field(default_factory=dict)
    copied: dict[str, int] = field(default_factory=dict)
    lost_ids: dict[str, int] = field(default_factory=dict)  # id gaps: rows the damage took
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"salvage by {self.method}"]
        for table in SALVAGE_TABLES:
            if table in self.readable:
                lost = self.lost_ids.get(table)
                out.append(
                    f"  {table}: {self.readable[table]} readable, {self.copied.get(table, 0)}"
                    f" copied" + (f", {lost} ids missing (lost)" if lost else "")
                )
        out += [f"  problem: {p}" for p in self.problems[:10]]
        return out


def salvage(damaged: Path, into: Path) -> SalvageReport:
    """Copy what is readable from a damaged journal into ``into`` (created if missing).

    Rows keep their ids, so nothing copied twice and sinks' cursors stay meaningful;
    a row whose id is already in ``into`` is left as it is there. Readings copied into
    the live journal are forwarded by the sinks when their cursor has not passed them.
    """
    with tempfile.TemporaryDirectory() as tmp:
        recovered = Path(tmp) / "recovered.db"
        method = _recover_with_shell(damaged, recovered)
        source = recovered if method else damaged
        report = SalvageReport(method or "row by row")
        target = Journal(into)
        try:
            db = target.connection
            db.execute("ATTACH DATABASE ? AS old", (str(source),))
            for table in SALVAGE_TABLES:
                _copy_table(db, table, report)
            db.execute("DETACH DATABASE old")
        finally:
            target.close()
    return report


def _recover_with_shell(damaged: Path, out: Path) -> str | None:
    """``sqlite3 damaged .recover | sqlite3 out``; None when the shell is not installed."""
    shell = shutil.which("sqlite3")
    if shell is None:
        return None
    dump = subprocess.run(
        [shell, str(damaged), ".recover"], capture_output=True, check=False, timeout=3600
    )
    if dump.returncode != 0 or dump.stderr.strip() or b"CREATE TABLE" not in dump.stdout:
        # e.g. Debian's sqlite3 3.40.1 answers "SQL logic error" to .recover on any file.
        log.info("sqlite3 .recover unusable here (%s); reading row by row", dump.stderr[:200])
        return None
    load = subprocess.run(
        [shell, str(out)], input=dump.stdout, capture_output=True, check=False, timeout=3600
    )
    if load.returncode != 0 or not out.exists():
        return None
    return "sqlite3 .recover"


def _copy_table(db: sqlite3.Connection, table: str, report: SalvageReport) -> None:
    try:
        columns = [r[1] for r in db.execute(f"PRAGMA old.table_info({table})").fetchall()]
        mine = {r[1] for r in db.execute(f"PRAGMA main.table_info({table})").fetchall()}
    except sqlite3.Error as exc:
        report.problems.append(f"{table}: {exc}")
        return
    shared = [c for c in columns if c in mine]
    if not shared:
        return
    names = ", ".join(shared)
    readable = copied = 0
    ids: list[int] = []
    try:
        rows = db.execute(f"SELECT {names} FROM old.{table}").fetchall()
    except sqlite3.DatabaseError:
        rows = _rows_one_by_one(db, table, names, report)
    marks = ", ".join("?" for _ in shared)
    with db:
        for row in rows:
            readable += 1
            if "id" in shared:
                ids.append(int(row[shared.index("id")]))
            cur = db.execute(f"INSERT OR IGNORE INTO main.{table} ({names}) VALUES ({marks})", row)
            copied += cur.rowcount
    report.readable[table] = readable
    report.copied[table] = copied
    if ids:
        report.lost_ids[table] = max(ids) - min(ids) + 1 - len(set(ids))


def _rows_one_by_one(
    db: sqlite3.Connection, table: str, names: str, report: SalvageReport
) -> list[tuple[object, ...]]:
    """Rows by rowid, skipping the ones on unreadable pages (no shell to recover with)."""
    rows: list[tuple[object, ...]] = []
    try:
        top = db.execute(f"SELECT MAX(rowid) FROM old.{table}").fetchone()[0] or 0
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"{table}: {exc}")
        return rows
    for rowid in range(1, int(top) + 1):
        try:
            row = db.execute(f"SELECT {names} FROM old.{table} WHERE rowid = ?", (rowid,))
            found = row.fetchone()
        except sqlite3.DatabaseError:
            continue
        if found is not None:
            rows.append(tuple(found))
    return rows
