"""The journal: SQLite in WAL mode, the edge's source of truth.

Every reading is committed here before it is acknowledged upstream, evaluated or
forwarded. Each sink keeps its own cursor per stream and advances it only after the
sink confirmed a batch, so a sink that is down holds its backlog and a restart (or a
SIGKILL) resumes where the last confirmed batch ended.

The connection is used from one worker thread only (:class:`JournalRunner`), which keeps
SQLite's file I/O off the event loop and serialises access without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from gateway.core.errors import JournalError, JournalRefused, JournalUnwritable
from gateway.core.files import SHARED, restrict_mode
from gateway.core.model import Reading, Reject
from gateway.journal.tx import immediate

if TYPE_CHECKING:
    from gateway.evidence.chain import Sealer

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    sensor TEXT NOT NULL,
    zone TEXT NOT NULL,
    source TEXT NOT NULL,
    temp_c REAL NOT NULL,
    rh REAL,
    battery_v REAL,
    quality INTEGER NOT NULL,
    seq INTEGER,
    battery_pct REAL
);
-- Time-major, so an insert lands at the right edge: a commit touches one or two index
-- pages whatever the number of zones (a (zone, ts) index touched one page per zone per
-- commit: most of the bytes written). Zone and time queries scan the time range; a
-- (sensor, ts) lookup finds the few rows of that instant. Only ts_ns: every byte of an
-- index entry is written twice per reading (WAL, checkpoint).
CREATE INDEX IF NOT EXISTS readings_ts_ns ON readings (ts_ns);
DROP INDEX IF EXISTS readings_zone_ts;
DROP INDEX IF EXISTS readings_ts;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ns INTEGER NOT NULL,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT NOT NULL,
    stream TEXT NOT NULL,
    position INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (sink, stream)
);
CREATE TABLE IF NOT EXISTS gateway_health (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    fields TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS budget_thinned (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    id_from INTEGER NOT NULL,
    id_to INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    at_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    stream TEXT NOT NULL,
    record_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    quarantined_ns INTEGER NOT NULL
);
"""

_INSERT_READING = (
    "INSERT INTO readings (ts_ns, received_ns, sensor, zone, source, temp_c, rh, battery_v,"
    " quality, seq, battery_pct) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# SQLite result codes (primary, the low byte) that say the storage failed, not the data.
_STORAGE_CODES = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
    }
)


def journal_error(what: str, exc: BaseException) -> JournalError:
    """Classify a failed write: the storage (retry, a state) or the records (poison).

    ``OverflowError`` (an int beyond 64 bits), ``ValueError``/``TypeError`` (a value
    sqlite3 cannot bind) and constraint or binding errors are the records' fault; disk
    full, I/O, read-only, locked, out of memory or a damaged file are the storage's.
    """
    msg = f"{what}: {type(exc).__name__}: {exc}"
    if isinstance(exc, sqlite3.OperationalError):
        return JournalUnwritable(msg)  # disk full, I/O, locked, read-only: the environment
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _STORAGE_CODES:
            return JournalUnwritable(msg)  # e.g. SQLITE_CORRUPT: a damaged page
    return JournalRefused(msg)


ReadingRow = tuple[int, Reading]
_READING_COLUMNS = (
    "ts_ns, received_ns, sensor, zone, source, temp_c, rh, battery_v, quality, seq, battery_pct"
)


def _reading(row: tuple[Any, ...]) -> Reading:
    """A Reading from a row selected with _READING_COLUMNS."""
    return Reading(
        sensor=row[2],
        ts_ns=row[0],
        received_ns=row[1],
        zone=row[3],
        source=row[4],
        temp_c=row[5],
        rh=row[6],
        battery_v=row[7],
        quality=row[8],
        seq=row[9],
        battery_pct=row[10],
    )


# Columns added after schema 1, with their type: a journal written by an older gateway
# gets them (NULL for its rows) when it is opened for writing. Additive only: evidence
# already journaled is never rewritten.
_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (("readings", "battery_pct", "REAL"),)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A journaled input that could not become a reading."""

    id: int
    received_ns: int
    source: str
    topic: str
    reason: str
    detail: str
    payload: bytes


BUDGET_TARGET = 0.9  # a journal over its disk budget is brought down to this share of it
WAL_SIZE_LIMIT = 64 * 1024 * 1024
PAGE_SIZE = 1024  # for new journals (see Journal.__init__)
_NOT_QUARANTINED = "id NOT IN (SELECT record_id FROM quarantine WHERE stream = 'readings')"


@dataclass(frozen=True, slots=True)
class BudgetResult:
    """What one disk-budget pass did (Journal.enforce_budget)."""

    used_bytes: int
    removed_delivered: int  # delivered readings deleted before their retention ran out
    removed_diagnostics: int  # delivered gateway_health snapshots and dead letters
    downsampled: int  # undelivered readings deleted (one kept per sensor and bucket)
    over: bool  # still over the budget after everything allowed was done
    more: bool = False  # the pass hit its work bound: call again with resume_id
    resume_id: int = 0


@dataclass(frozen=True, slots=True)
class Backlog:
    """What a sink has not yet confirmed on one stream."""

    records: int
    oldest_ts_ns: int | None


class Journal:
    """Synchronous access to the journal file. Use it from one thread (see JournalRunner)."""

    def __init__(self, path: str | Path, synchronous: Literal["full", "normal"] = "full") -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            if str(path) != ":memory:":
                # 0640 at most whatever the umask: SQLite gives the WAL and SHM files the
                # database file's mode when it creates them.
                for suffix in ("", "-wal", "-shm"):
                    restrict_mode(f"{self.path}{suffix}", SHARED)
            # A new journal gets small pages: every commit rewrites its partly filled last
            # pages whole, so the page is the unit of write amplification (no effect on an
            # existing file, which keeps its page size).
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            self._db.execute("PRAGMA journal_mode=WAL")
            # Deleted rows are not zeroed on disk when that costs an extra page write (the
            # build's default is ON: a prune would write every page it frees).
            self._db.execute("PRAGMA secure_delete=FAST")
            # Checkpoint every ~4 MB of WAL (SQLite's default is 1000 pages, 4 MB with its
            # default 4 KiB pages, 1 MB with ours): pages changed by every commit (the page
            # header, the last pages of each table, interior pages) are checkpointed once
            # per checkpoint, each as a 4 KiB write to the card.
            self._db.execute(f"PRAGMA wal_autocheckpoint={4 * 1024 * 1024 // PAGE_SIZE}")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout=5000")
            # After a checkpoint the WAL file is cut back to this (it only grows otherwise).
            self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._db.executescript(_SCHEMA)
            _add_missing_columns(self._db)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        except sqlite3.Error as exc:
            msg = f"cannot open journal {path}: {exc}"
            raise JournalError(msg) from exc

    readonly = False
    sealer: Sealer | None = None
    """Seals each commit into the evidence chain and records deliberate deletions."""

    @classmethod
    def open_readonly(cls, path: str | Path) -> Journal:
        """Open an existing journal for reading only (verify, trace: evidence stays as is)."""
        journal = cls.__new__(cls)
        journal.path = Path(path)
        journal.readonly = True
        if not journal.path.is_file():
            msg = f"cannot open journal {path}: no such file"
            raise JournalError(msg)
        try:
            journal._db = sqlite3.connect(
                f"{journal.path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            journal._db.execute("PRAGMA busy_timeout=5000")
            journal._db.execute("SELECT COUNT(*) FROM meta").fetchone()
        except sqlite3.Error as exc:
            msg = f"cannot open journal {path} read-only: {exc}"
            raise JournalError(msg) from exc
        return journal

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, for stores that keep their own tables here (alerts)."""
        return self._db

    def close(self) -> None:
        """Checkpoint the WAL (unless read-only) and close the file."""
        try:
            if not self.readonly:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            # A full disk or an I/O error: the WAL stays and is replayed at the next open.
            logging.getLogger(__name__).warning("journal checkpoint at close failed: %s", exc)
        finally:
            self._db.close()

    def commit_batch(
        self, readings: Sequence[Reading], dead_letters: Sequence[Reject], now_ns: int
    ) -> int:
        """Append readings and dead letters in one durable transaction; returns the last id."""
        try:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany(
                    _INSERT_READING,
                    [
                        (
                            r.ts_ns,
                            r.received_ns,
                            r.sensor,
                            r.zone,
                            r.source,
                            r.temp_c,
                            r.rh,
                            r.battery_v,
                            r.quality,
                            r.seq,
                            r.battery_pct,
                        )
                        for r in readings
                    ],
                )
                if dead_letters:
                    cur.executemany(
                        "INSERT INTO dead_letters (received_ns, source, topic, reason, detail,"
                        " payload) VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (now_ns, d.source, d.topic, d.reason, d.detail, d.raw)
                            for d in dead_letters
                        ],
                    )
                last = cur.execute("SELECT seq FROM sqlite_sequence WHERE name='readings'")
                row = last.fetchone()
                if self.sealer is not None:
                    self.sealer.in_commit(now_ns)  # the evidence chain (gateway.evidence)
                cur.execute("COMMIT")
            except BaseException:
                self.rollback()
                if self.sealer is not None:
                    self.sealer.rolled_back()
                raise
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:
            raise journal_error("journal commit failed", exc) from exc
        return int(row[0]) if row else 0

    def probe(self, now_ns: int) -> None:
        """A one-row durable write: can the journal be written again (disk full, I/O)?"""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('probe_ns', ?)",
                    (str(now_ns),),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self.rollback()
                raise
        except sqlite3.Error as exc:
            raise journal_error("journal probe failed", exc) from exc

    def rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already done so.

        On SQLITE_FULL and some I/O errors SQLite rolls the transaction back itself; a
        ROLLBACK then fails with "no transaction is active", which used to replace the
        real error in the traceback.
        """
        if self._db.in_transaction:
            # The original error is what matters; the connection recovers by itself.
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def readings_after(self, position: int, limit: int) -> list[ReadingRow]:
        """Readings with id > position, oldest first, at most limit."""
        rows = self._db.execute(
            f"SELECT id, {_READING_COLUMNS} FROM readings WHERE id > ? ORDER BY id LIMIT ?",
            (position, limit),
        ).fetchall()
        return [(row[0], _reading(row[1:])) for row in rows]

    def readings_between(self, zones: Iterable[str], start_ns: int, end_ns: int) -> list[Reading]:
        """Readings of these zones with start_ns <= ts < end_ns, by time."""
        zone_list = list(zones)
        marks = ",".join("?" for _ in zone_list)
        rows = self._db.execute(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE zone IN ({marks})"
            " AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns, id",
            (*zone_list, start_ns, end_ns),
        ).fetchall()
        return [_reading(r) for r in rows]

    def readings_in_commit_order(
        self, zones: Iterable[str], start_ns: int, end_ns: int
    ) -> list[Reading]:
        """Readings of these zones with start_ns <= ts < end_ns, in the order they committed.

        The SOP rules saw them in this order; a replay (restart, trace) must too, or a late
        reading would count in the replay where the live rule skipped it.
        """
        zone_list = list(zones)
        marks = ",".join("?" for _ in zone_list)
        rows = self._db.execute(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE zone IN ({marks})"
            " AND ts_ns >= ? AND ts_ns < ? ORDER BY id",
            (*zone_list, start_ns, end_ns),
        ).fetchall()
        return [_reading(r) for r in rows]

    def last_id(self, table: str = "readings") -> int:
        """The highest id ever assigned in a table (0 when empty)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name=?", (table,)).fetchone()
        return int(row[0]) if row else 0

    def cursor(self, sink: str, stream: str) -> int:
        """Where a sink stands on a stream (0 = nothing confirmed yet)."""
        row = self._db.execute(
            "SELECT position FROM cursors WHERE sink=? AND stream=?", (sink, stream)
        ).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, sink: str, stream: str, position: int, now_ns: int) -> None:
        """Record that a sink confirmed everything up to position on a stream."""
        self._db.execute(
            "INSERT INTO cursors (sink, stream, position, updated_ns) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (sink, stream) DO UPDATE SET position=excluded.position,"
            " updated_ns=excluded.updated_ns",
            (sink, stream, position, now_ns),
        )

    def set_cursors(self, sink: str, positions: Mapping[str, int], now_ns: int) -> None:
        """Record several of a sink's stream positions in one transaction (one fsync)."""
        try:
            with immediate(self._db):
                for stream, position in positions.items():
                    self.set_cursor(sink, stream, position, now_ns)
        except sqlite3.Error as exc:
            msg = f"cursor update failed: {exc}"
            raise JournalError(msg) from exc

    def backlog(self, sink: str, stream: str = "readings") -> Backlog:
        """How many readings a sink has not confirmed and when the oldest was received.

        Ids are dense (AUTOINCREMENT, rolled-back inserts release theirs) except where the
        disk budget thinned readings, which it records; so the count is a subtraction, not
        a table scan: cheap enough to call every status interval.
        """
        position = self.cursor(sink, stream)
        row = self._db.execute(
            "SELECT received_ns FROM readings WHERE id > ? ORDER BY id LIMIT 1", (position,)
        ).fetchone()
        if row is None:
            return Backlog(records=0, oldest_ts_ns=None)
        thinned = self._db.execute(
            "SELECT COALESCE(SUM(rows), 0) FROM budget_thinned WHERE id_from > ?", (position,)
        ).fetchone()[0]
        records = max(0, self.last_id() - position - int(thinned))
        return Backlog(records=records, oldest_ts_ns=int(row[0]))

    def prune(self, older_than_ns: int, sinks: Iterable[str], chunk: int = 10_000) -> int:
        """Delete delivered readings received before a time; returns how many went.

        A reading goes only when every named sink's cursor has passed it, so pruning
        never drops a backlog. Deletes run in chunks to keep write locks short.
        """
        sinks = list(sinks)
        positions = [self.cursor(sink, "readings") for sink in sinks]
        limit = min(positions) if positions else self.last_id()
        removed = 0
        while True:
            cur = self._db.execute(
                "DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE id <= ?"
                f" AND received_ns < ? AND {_NOT_QUARANTINED} ORDER BY id LIMIT ?)",
                (limit, older_than_ns, chunk),
            )
            removed += cur.rowcount
            self._removed("readings", limit, cur.rowcount, "retention")
            if cur.rowcount < chunk:
                break
        cur = self._db.execute("DELETE FROM dead_letters WHERE received_ns < ?", (older_than_ns,))
        self._removed("dead_letters", self.last_id("dead_letters"), cur.rowcount, "retention")
        health = [self.cursor(sink, "gateway_health") for sink in sinks]
        self._db.execute(
            "DELETE FROM gateway_health WHERE ts_ns < ? AND id <= ?",
            (older_than_ns, min(health) if health else self.last_health_id()),
        )
        self._db.execute("DELETE FROM budget_thinned WHERE id_to <= ?", (limit,))
        return removed

    def _removed(self, table: str, up_to_id: int, rows: int, reason: str) -> None:
        if self.sealer is not None and rows > 0:
            self.sealer.record_removal(table, up_to_id, rows, reason)

    def last_health_id(self) -> int:
        """Id of the newest gateway_health snapshot (0 when none)."""
        row = self._db.execute("SELECT MAX(id) FROM gateway_health").fetchone()
        return int(row[0] or 0)

    def checkpoint(self) -> None:
        """Checkpoint the WAL and cut the file back (after a large delete)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def used_bytes(self) -> int:
        """Bytes of the journal's pages in use (the file keeps free pages for reuse)."""
        page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * page_size

    def enforce_budget(
        self,
        max_bytes: int,
        sinks: Iterable[str],
        downsample_ns: int,
        protect_after_ns: int,
        now_ns: int,
        *,
        resume_id: int = 0,
        chunk: int = 10_000,
        max_statements: int = 20,
    ) -> BudgetResult:
        """One bounded pass towards a disk budget (DESIGN: custody and alerts never go).

        Over ``max_bytes``, space is freed down to 90 % of it, in this order: delivered
        readings (every sink's cursor passed them), oldest first; delivered gateway_health
        snapshots and dead letters, oldest first; then the oldest undelivered readings are
        thinned to the first reading of each sensor per ``downsample_ns`` bucket. With no
        sink the journal is the only copy: nothing counts as delivered, readings are only
        thinned. Readings received after ``protect_after_ns`` (the newest hour, open
        shipments' custody) and quarantined readings are never deleted or thinned; custody
        records and alerts are never touched. At most ``max_statements`` deletes run per
        call, so the journal thread stays responsive: while ``more`` is set, call again
        with ``resume_id``.
        """
        used = self.used_bytes()
        if used <= max_bytes and not resume_id:
            return BudgetResult(used, 0, 0, 0, over=False)
        target = int(max_bytes * BUDGET_TARGET)
        sinks = list(sinks)
        delivered = min(self.cursor(s, "readings") for s in sinks) if sinks else 0
        statements = removed = diagnostics = downsampled = 0
        while used > target and statements < max_statements:
            n = self._db.execute(
                "DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE id <= ?"
                f" AND received_ns < ? AND {_NOT_QUARANTINED} ORDER BY id LIMIT ?)",
                (delivered, protect_after_ns, chunk),
            ).rowcount
            statements += n > 0  # a statement that found nothing is no work to bound
            removed += n
            self._removed("readings", delivered, n, "disk budget: delivered")
            used = self.used_bytes()
            if n < chunk:
                break
        health = [self.cursor(s, "gateway_health") for s in sinks]
        health_done = min(health) if health else self.last_health_id()
        for table, where, args in (
            ("gateway_health", "id <= ?", (health_done,)),
            ("dead_letters", "received_ns < ?", (protect_after_ns,)),
        ):
            while used > target and statements < max_statements:
                n = self._db.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where}"
                    " ORDER BY id LIMIT ?)",
                    (*args, chunk),
                ).rowcount
                statements += n > 0
                diagnostics += n
                self._removed(table, self.last_id(table), n, "disk budget")
                used = self.used_bytes()
                if n < chunk:
                    break
        position: int | None = max(resume_id, delivered)
        while used > target and statements < max_statements and position is not None:
            last = self._db.execute(
                "SELECT MAX(id) FROM (SELECT id FROM readings WHERE id > ? AND received_ns < ?"
                " ORDER BY id LIMIT ?)",
                (position, protect_after_ns, chunk * 5),
            ).fetchone()[0]
            if last is None:
                position = None  # nothing older than the protected span is left to thin
                break
            n = self._db.execute(
                f"DELETE FROM readings WHERE id > ? AND id <= ? AND {_NOT_QUARANTINED}"
                " AND id NOT IN (SELECT MIN(id) FROM readings WHERE id > ? AND id <= ?"
                " GROUP BY sensor, ts_ns / ?)",
                (position, last, position, last, downsample_ns),
            ).rowcount
            statements += 1
            self._removed("readings", int(last), n, "disk budget: thinned")
            if n:
                self._db.execute(
                    "INSERT INTO budget_thinned (id_from, id_to, rows, at_ns) VALUES (?, ?, ?, ?)",
                    (position + 1, int(last), n, now_ns),
                )
            downsampled += n
            position = int(last)
            used = self.used_bytes()
        more = used > target and statements >= max_statements and position is not None
        return BudgetResult(
            used,
            removed,
            diagnostics,
            downsampled,
            over=used > max_bytes and not more,
            more=more,
            resume_id=position or 0,
        )

    def append_health(self, ts_ns: int, fields: dict[str, float | int]) -> int:
        """Journal one gateway self-metrics snapshot (forwarded as ``gateway_health``)."""
        cur = self._db.execute(
            "INSERT INTO gateway_health (ts_ns, fields) VALUES (?, ?)",
            (ts_ns, json.dumps(fields, sort_keys=True)),
        )
        return int(cur.lastrowid or 0)

    def health_after(
        self, position: int, limit: int
    ) -> list[tuple[int, int, dict[str, float | int]]]:
        """Self-metrics snapshots after position: (id, ts_ns, fields)."""
        rows = self._db.execute(
            "SELECT id, ts_ns, fields FROM gateway_health WHERE id > ? ORDER BY id LIMIT ?",
            (position, limit),
        ).fetchall()
        return [(int(r[0]), int(r[1]), json.loads(r[2])) for r in rows]

    def quarantine(self, sink: str, stream: str, record_id: int, reason: str, now_ns: int) -> None:
        """Set aside a record a sink refused for good, so the backlog can move on."""
        self._db.execute(
            "INSERT INTO quarantine (sink, stream, record_id, reason, quarantined_ns)"
            " VALUES (?, ?, ?, ?, ?)",
            (sink, stream, record_id, reason, now_ns),
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        rows = self._db.execute(
            "SELECT id, received_ns, source, topic, reason, detail, payload FROM dead_letters"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def count(self, table: str) -> int:
        """Rows in a table (tests and status)."""
        if table not in {"readings", "dead_letters", "quarantine"}:
            msg = f"unknown table {table}"
            raise ValueError(msg)
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


P = ParamSpec("P")
T = TypeVar("T")


class JournalRunner:
    """Runs Journal calls on one dedicated worker thread, awaitable from the event loop."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run fn(*args) on the journal thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        """Finish queued work, then close the journal."""
        self._pool.submit(self.journal.close).result()
        self._pool.shutdown(wait=True)
