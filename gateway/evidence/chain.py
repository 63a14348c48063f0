"""One tamper-evident history over every journaled record, sealed in commit batches.

Why batches: hashing and linking each reading on its own would add a row (and a page
write) per reading. Instead, each *seal* covers every record appended to the chained tables
since the previous seal (the readings of one commit, the custody events, alert events and
config changes written meanwhile) and adds one ``evidence_chain`` row:

* each covered row gets a 64-bit *tag*, the first 8 bytes of SHA-256 over its canonical
  form (:func:`canonical_row`); the tags are stored in row order (8 bytes per reading:
  this is what lets ``coldchain verify`` name the first row that was edited or deleted);
* the entry's *head* is SHA-256 over its canonical header (:func:`header_bytes`): the
  entry's seq and time, the id span of each table, SHA-256 of the tag list and the
  previous entry's head. Changing, deleting or inserting any covered row, or any entry,
  breaks every head from there on.

A chain on its own only shows that the history is self-consistent: whoever can write the
file can recompute it. What a rewrite cannot fake is a head that was already signed with
the hub key and copied off the box (``gateway.evidence.checkpoint``); docs/evidence.md
spells out the threat model.

Rows that retention or the disk budget delete on purpose are recorded first as a
``removal`` entry in the same chain (table, highest id concerned, row count, reason), so a
verifier can tell a recorded removal from a deletion.

The canonical form is published (docs/evidence.md); change it only with that document.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.journal.tx import immediate

log = logging.getLogger(__name__)
_encode_str: Callable[[str], str] = json.encoder.encode_basestring

GENESIS_HEAD: Final = "0" * 64
TAG_BYTES: Final = 8
CHAINED_TABLES: Final[tuple[str, ...]] = (
    "readings",
    "dead_letters",
    "custody_events",
    "alert_events",
    "notify_attempts",
    "config_log",
)
"""Append-only tables whose every row is sealed (a table that does not exist is skipped:
``notify_attempts`` exists once notifications are configured). Mutable state tables (``alerts``,
``cursors``, ``custody_inbox``) are derived from these or are plumbing, and are not."""

MAX_ROWS_PER_SEAL: Final = 50_000
"""A journal that predates the chain is sealed in entries of at most this many rows."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evidence_chain (
    seq INTEGER PRIMARY KEY,
    at_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    spans TEXT NOT NULL,
    tags BLOB NOT NULL,
    note TEXT,
    head BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS config_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


def _jsonable(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": bytes(value).hex()}
    return value


def canonical_row(table: str, columns: Sequence[str], values: Sequence[object]) -> bytes:
    """The published canonical form of one row: compact JSON, sorted keys, UTF-8.

    ``{"$table": <table>, <column>: <value>, ...}`` with every non-NULL column (so a column
    added later, NULL in old rows, leaves their form unchanged); integers as integers,
    floats as Python's ``repr`` (shortest text reading back to the same double; infinities
    as ``Infinity``), BLOBs as ``{"$bytes": "<hex>"}``.
    """
    data: dict[str, object] = {"$table": table}
    for name, value in zip(columns, values, strict=True):
        if value is not None:
            data[name] = _jsonable(value)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


class RowEncoder:
    """:func:`canonical_row` for one table's column list, about 4x faster (the seal's hot path).

    The key order is sorted once; strings go through json's C escaper, integers and finite
    floats through ``repr`` (what ``json.dumps`` writes); anything else falls back to
    :func:`canonical_row`. tests/gateway/evidence/test_chain.py checks both agree.
    """

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = list(columns)
        order = sorted(range(len(columns)), key=lambda i: columns[i])
        self._order = [(i, _encode_str(columns[i]) + ":") for i in order]
        self._head = '{"$table":' + _encode_str(table)

    def encode(self, values: Sequence[object]) -> bytes:
        """The canonical form of one row."""
        parts = [self._head]
        for i, key in self._order:
            value = values[i]
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                text = _encode_str(value)  # type: ignore[arg-type]
            elif kind is int or (kind is float and math.isfinite(value)):  # type: ignore[arg-type]
                text = repr(value)
            else:
                return canonical_row(self.table, self.columns, values)
            parts.append("," + key + text)
        parts.append("}")
        return "".join(parts).encode("utf-8")


def row_tag(table: str, columns: Sequence[str], values: Sequence[object]) -> bytes:
    """First 8 bytes of SHA-256 over the row's canonical form."""
    return hashlib.sha256(canonical_row(table, columns, values)).digest()[:TAG_BYTES]


Span = tuple[int, int, int]
"""(first id, last id, rows) of one table in an entry; for a removal: (0, highest id, rows)."""


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One link: a seal over new rows, or a recorded removal."""

    seq: int
    at_ns: int
    kind: str  # "seal" | "removal"
    spans: Mapping[str, Span]
    tags: bytes
    note: str | None
    head: str  # hex

    def tag_list(self) -> list[bytes]:
        """The tags as 8-byte strings, in table-name then id order."""
        return [self.tags[i : i + TAG_BYTES] for i in range(0, len(self.tags), TAG_BYTES)]


def header_bytes(
    seq: int,
    at_ns: int,
    kind: str,
    spans: Mapping[str, Span],
    tags: bytes,
    note: str | None,
    prev: str,
) -> bytes:
    """Canonical header of an entry (what ``head`` hashes): compact sorted JSON, UTF-8."""
    data = {
        "seq": seq,
        "at_ns": at_ns,
        "kind": kind,
        "spans": {name: list(span) for name, span in sorted(spans.items())},
        "tags_sha256": hashlib.sha256(tags).hexdigest(),
        "note": note,
        "prev": prev,
    }
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def entry_head(
    seq: int,
    at_ns: int,
    kind: str,
    spans: Mapping[str, Span],
    tags: bytes,
    note: str | None,
    prev: str,
) -> str:
    """Hex SHA-256 of the canonical header."""
    return hashlib.sha256(header_bytes(seq, at_ns, kind, spans, tags, note, prev)).hexdigest()


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the chain's tables (idempotent; needs a writable connection)."""
    db.executescript(_SCHEMA)


def existing_tables(db: sqlite3.Connection) -> list[str]:
    """The chained tables present in this journal, in chain order (sorted by name)."""
    names = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return sorted(t for t in CHAINED_TABLES if t in names)


def _entry(row: Sequence[Any]) -> ChainEntry:
    spans = {str(k): (int(v[0]), int(v[1]), int(v[2])) for k, v in json.loads(row[3]).items()}
    return ChainEntry(
        seq=int(row[0]),
        at_ns=int(row[1]),
        kind=str(row[2]),
        spans=spans,
        tags=bytes(row[4]),
        note=None if row[5] is None else str(row[5]),
        head=bytes(row[6]).hex(),
    )


def entries(db: sqlite3.Connection, after: int = 0, page: int = 500) -> Iterator[ChainEntry]:
    """Every chain entry with seq > after, in order, read page by page."""
    while True:
        rows = db.execute(
            "SELECT seq, at_ns, kind, spans, tags, note, head FROM evidence_chain"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, page),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield _entry(row)
        after = int(rows[-1][0])


@dataclass(slots=True)
class ChainHead:
    """Where the chain stands: last seq, its head, and the last sealed id of each table."""

    seq: int = 0
    head: str = GENESIS_HEAD
    at_ns: int = 0
    sealed: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # rows sealed so far, per table


def load_head(db: sqlite3.Connection) -> ChainHead:
    """The chain's current head, read from the journal (one pass over the entries' spans)."""
    state = ChainHead()
    try:
        last = db.execute(
            "SELECT seq, at_ns, head FROM evidence_chain ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    except sqlite3.OperationalError:
        return state  # a journal from before the chain
    if last is None:
        return state
    state.seq, state.at_ns, state.head = int(last[0]), int(last[1]), bytes(last[2]).hex()
    for table in CHAINED_TABLES:
        row = db.execute(
            "SELECT MAX(json_extract(spans, ?)), SUM(json_extract(spans, ?))"
            " FROM evidence_chain WHERE kind = 'seal'",
            (f'$."{table}"[1]', f'$."{table}"[2]'),
        ).fetchone()
        if row[0] is not None:
            state.sealed[table] = int(row[0])
            state.rows[table] = int(row[1] or 0)
    return state


class Sealer:
    """Appends chain entries; used on the journal thread, inside the caller's transaction."""

    def __init__(
        self,
        db: sqlite3.Connection,
        now_ns: Callable[[], int],
        *,
        interval_ns: int = 0,
    ) -> None:
        self._db = db
        self._now = now_ns
        ensure_schema(db)
        self.state = load_head(db)
        self._tables = existing_tables(db)
        self.interval_ns = interval_ns
        self._encoders: dict[str, RowEncoder] = {}
        self.enabled = True
        self.failures = 0
        self.last_error: str | None = None

    def in_commit(self, now_ns: int) -> None:
        """The journal's commit hook: seal when the last seal is ``interval_ns`` old.

        A failure to seal never loses the commit: the rows stay unsealed until the next
        seal, the failure is counted and logged.
        """
        if not self.enabled or now_ns - self.state.at_ns < self.interval_ns:
            return
        try:
            self.seal(now_ns)
        except sqlite3.Error:
            raise  # the commit is retried as a whole (JournalError)
        except Exception as exc:  # a bug here must not cost a reading
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("evidence seal failed; rows stay unsealed until the next seal")

    def rolled_back(self) -> None:
        """The transaction that sealed was rolled back: re-read where the chain stands."""
        self.state = load_head(self._db)

    def refresh_tables(self) -> None:
        """Pick up chained tables created after start (the notification outbox)."""
        self._tables = existing_tables(self._db)

    def _select(self, table: str, after: int, limit: int) -> tuple[list[str], list[Any]]:
        cur = self._db.execute(
            f"SELECT * FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        columns = [d[0] for d in cur.description]
        return columns, cur.fetchall()

    def seal(self, now_ns: int) -> ChainEntry | None:
        """Seal every row appended since the last seal (None when there was none).

        Call inside an open transaction (the commit's, or :meth:`seal_now`'s).
        """
        if not self.enabled:
            return None
        spans: dict[str, Span] = {}
        tags = bytearray()
        for table in self._tables:
            after = self.state.sealed.get(table, 0)
            columns, rows = self._select(table, after, MAX_ROWS_PER_SEAL)
            if not rows:
                continue
            ids = columns.index("id")
            encoder = self._encoders.get(table)
            if encoder is None or encoder.columns != columns:
                encoder = self._encoders[table] = RowEncoder(table, columns)
            sha256 = hashlib.sha256
            encode = encoder.encode
            for row in rows:
                tags += sha256(encode(row)).digest()[:TAG_BYTES]
            spans[table] = (int(rows[0][ids]), int(rows[-1][ids]), len(rows))
        if not spans:
            return None
        entry = self._append(now_ns, "seal", spans, bytes(tags), None)
        for table, (_, last, count) in spans.items():
            self.state.sealed[table] = last
            self.state.rows[table] = self.state.rows.get(table, 0) + count
        return entry

    def seal_now(self, now_ns: int) -> ChainEntry | None:
        """Seal in a transaction of its own (for rows written outside a reading commit)."""
        entry: ChainEntry | None = None
        try:
            with immediate(self._db):
                while True:
                    sealed = self.seal(now_ns)
                    if sealed is None:
                        break
                    entry = sealed
        except BaseException:
            self.state = load_head(self._db)
            raise
        return entry

    def record_removal(self, table: str, up_to_id: int, rows: int, reason: str) -> None:
        """Chain a deliberate deletion (retention, disk budget) right after it.

        Deletion only reaches rows sealed long before (delivered or old), so the removal
        entry tells a verifier that up to ``rows`` rows with id <= ``up_to_id`` are gone on
        purpose. (A crash between the DELETE and this entry leaves an unexplained gap:
        verify reports it as a deletion, the log shows the retention run.)
        """
        if not self.enabled or rows <= 0 or table not in CHAINED_TABLES:
            return
        now = max(self._now(), self.state.at_ns)
        self._append(now, "removal", {table: (0, int(up_to_id), int(rows))}, b"", reason)

    def _append(
        self, now_ns: int, kind: str, spans: Mapping[str, Span], tags: bytes, note: str | None
    ) -> ChainEntry:
        seq = self.state.seq + 1
        head = entry_head(seq, now_ns, kind, spans, tags, note, self.state.head)
        self._db.execute(
            "INSERT INTO evidence_chain (seq, at_ns, kind, spans, tags, note, head)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                now_ns,
                kind,
                json.dumps({k: list(v) for k, v in sorted(spans.items())}, separators=(",", ":")),
                tags,
                note,
                bytes.fromhex(head),
            ),
        )
        self.state.seq, self.state.head, self.state.at_ns = seq, head, now_ns
        return ChainEntry(seq, now_ns, kind, dict(spans), tags, note, head)


def config_fingerprint(document: Mapping[str, object]) -> str:
    """SHA-256 over the config's canonical JSON (secrets are references, never values)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def log_config(
    db: sqlite3.Connection, fingerprint: str, detail: Mapping[str, object], now_ns: int
) -> bool:
    """Journal the config (and calibration) in force when it differs from the last logged.

    Returns True when a row was added (first start, a reload with changes, a new offset).
    """
    last = db.execute("SELECT fingerprint FROM config_log ORDER BY id DESC LIMIT 1").fetchone()
    if last is not None and last[0] == fingerprint:
        return False
    kind = "initial" if last is None else "changed"
    db.execute(
        "INSERT INTO config_log (at_ns, kind, fingerprint, detail) VALUES (?, ?, ?, ?)",
        (now_ns, kind, fingerprint, json.dumps(detail, sort_keys=True, default=str)),
    )
    return True


def iter_tags(spans: Mapping[str, Span], tags: bytes) -> Iterable[tuple[str, int, bytes]]:
    """(table, position in the table's span, tag) in the order the tags were written."""
    offset = 0
    for table, (_, _, count) in sorted(spans.items()):
        for i in range(count):
            yield table, i, tags[offset : offset + TAG_BYTES]
            offset += TAG_BYTES
