"""One way to write to the journal in a transaction: ``with immediate(db) as cur: ...``.

``BEGIN IMMEDIATE`` takes the write lock at the start (no deadlock between two writers
upgrading from a read); COMMIT on success; on any error ROLLBACK, unless SQLite already
rolled back by itself (SQLITE_FULL and some I/O errors do): a ROLLBACK then fails with "no
transaction is active", which must never replace the real error. ``durable=True`` commits
with ``synchronous=FULL`` even on a journal opened with ``normal`` (custody handoffs).
The connection is the journal's (``isolation_level=None``), used from its one thread.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

_FULL = 2  # PRAGMA synchronous: FULL (2) and EXTRA (3) fsync the WAL at COMMIT


@contextmanager
def immediate(db: sqlite3.Connection, *, durable: bool = False) -> Iterator[sqlite3.Cursor]:
    """A write transaction on ``db``; yields its cursor."""
    cur = db.cursor()
    level = int(cur.execute("PRAGMA synchronous").fetchone()[0]) if durable else _FULL
    if level < _FULL:
        cur.execute("PRAGMA synchronous=FULL")
    try:
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                # The original error is what matters; the connection recovers by itself.
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
    finally:
        if level < _FULL:
            cur.execute(f"PRAGMA synchronous={level}")
