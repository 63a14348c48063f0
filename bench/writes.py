"""Write accounting of a gateway process: what it writes to disk, how often it syncs, and why.

Two independent sources, measured over the same window:

- ``/proc/<pid>/io`` of the process: ``write_bytes`` (bytes the process caused to be sent
  to the block layer: page-cache pages it dirtied, 4 KiB each, so a 100-byte append to a
  clean page counts 4,096), ``wchar`` (bytes passed to write calls) and ``syscw`` (write
  calls). This is the figure that wears the card.
- ``strace -ff --seccomp-bpf`` of the same process (only the traced calls stop, so it
  costs little): every write/pwrite64 with its file, every fsync/fdatasync. The SQLite WAL
  is decoded: SQLite writes each frame as a 24-byte header (page number, commit size)
  followed by the page, so every WAL frame is attributed to its page, and a page to its
  table or index through SQLite's ``dbstat`` at the end of the run; checkpoint writes to
  the database file are attributed by their offset (page = offset / page size + 1).

The breakdown is by cause: readings (table, index), cursors, gateway_health, alerts,
custody, sqlite_sequence (AUTOINCREMENT), page 1 (database header: its size changes when
the file grows), the status file, the log.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TRACED = "write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,sync_file_range,ftruncate"

_LINE = re.compile(r"^([\d.]+) (\w+)\((\d+)<((?:\\x[0-9a-f]{2})*)>(.*)\) += (-?\d+)")
_DATA = re.compile(r'^, "((?:\\x[0-9a-f]{2})*)"(?:\.\.\.)?, (\d+)(?:, (\d+))?$')


def strace_prefix(log: Path) -> list[str] | None:
    """The argv prefix that runs a command under strace writing ``log.<tid>`` files."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    return [
        strace,
        "-ff",
        "--seccomp-bpf",
        "-ttt",
        "-y",
        "-xx",
        "-s",
        "24",
        "-e",
        f"trace={TRACED}",
        "-o",
        str(log),
    ]


def read_io(pid: int) -> dict[str, int]:
    """``/proc/<pid>/io`` as a dict (write_bytes, syscw, wchar, ...)."""
    out = {}
    for row in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = row.partition(":")
        out[key.strip()] = int(value)
    return out


def _unhex(text: str) -> bytes:
    return bytes(int(h, 16) for h in text.split("\\x")[1:])


@dataclass
class WriteTally:
    """What strace saw between two wall-clock times."""

    bytes_by_cause: Counter[str] = field(default_factory=Counter)
    calls_by_cause: Counter[str] = field(default_factory=Counter)
    syncs_by_file: Counter[str] = field(default_factory=Counter)
    wal_frames_by_cause: Counter[str] = field(default_factory=Counter)
    checkpoint_pages_by_cause: Counter[str] = field(default_factory=Counter)
    commits: int = 0  # WAL commit frames (transactions)

    @property
    def syncs(self) -> int:
        """fsync + fdatasync calls."""
        return sum(self.syncs_by_file.values())

    @property
    def total_bytes(self) -> int:
        """Bytes passed to write calls on files (not sockets or pipes)."""
        return sum(self.bytes_by_cause.values())


def page_owners(db_path: Path) -> tuple[dict[int, str], int]:
    """(page number -> table or index name, page size) from SQLite's dbstat."""
    db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        owners = {int(p): str(n) for n, p in db.execute("SELECT name, pageno FROM dbstat")}
    finally:
        db.close()
    owners[1] = "page 1 (header)"
    return owners, page_size


def _cause_of_file(path: str, journal: Path) -> str | None:
    """Which file a write went to; None for sockets, pipes and terminals (not the card)."""
    if not path.startswith("/"):
        return None
    name = Path(path).name
    known = {
        journal.name + "-wal": "wal",
        journal.name: "db",
        journal.name + "-shm": "shm (mmap, tmpfs-like: not the card)",
    }
    if name in known:
        return known[name]
    if name.startswith("status."):
        return "status file"
    return "log" if name.endswith(".log") else f"other: {name}"


def tally(log_prefix: Path, journal: Path, t0: float, t1: float) -> WriteTally:
    """Sum the strace logs of every thread between wall times t0 and t1."""
    owners, page_size = page_owners(journal)
    out = WriteTally()
    for log in sorted(log_prefix.parent.glob(log_prefix.name + ".*")):
        pending_page: int | None = None  # the WAL frame header just seen: its page follows
        for row in log.read_text(errors="replace").splitlines():
            m = _LINE.match(row)
            if m is None:
                continue
            ts, call, _fd, hexpath, rest, ret = m.groups()
            if not t0 <= float(ts) < t1:
                continue
            cause = _cause_of_file(_unhex(hexpath).decode(errors="replace"), journal)
            if cause is None:
                continue
            if call in {"fsync", "fdatasync", "sync_file_range"}:
                out.syncs_by_file[cause] += 1
                continue
            if call == "ftruncate":
                out.calls_by_cause[f"{cause}: truncate"] += 1
                continue
            written = max(0, int(ret))
            label = cause
            d = _DATA.match(rest)
            if cause == "wal" and d is not None:
                data = _unhex(d.group(1))
                if written == 24 and len(data) >= 8:
                    pending_page = int.from_bytes(data[:4], "big")
                    out.commits += int.from_bytes(data[4:8], "big") != 0
                    label = "wal: frame headers"
                elif written == 32 and d.group(3) == "0":
                    label = "wal: file header"
                elif pending_page is not None:
                    owner = owners.get(pending_page, "freed pages")
                    label = f"wal: {owner}"
                    out.wal_frames_by_cause[owner] += 1
                    pending_page = None
            elif cause == "db" and d is not None and d.group(3) is not None:
                page = int(d.group(3)) // page_size + 1
                owner = owners.get(page, "freed pages")
                label = f"checkpoint: {owner}"
                out.checkpoint_pages_by_cause[owner] += 1
            out.bytes_by_cause[label] += written
            out.calls_by_cause[label] += 1
    return out


def stored_bytes_per_reading(journal: Path) -> tuple[float, int]:
    """(bytes of the readings table and its indexes per reading, readings) from dbstat."""
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = int(db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        names = [
            str(r[0])
            for r in db.execute(
                "SELECT name FROM sqlite_schema WHERE tbl_name = 'readings' AND name NOT LIKE"
                " 'sqlite_autoindex%'"
            )
        ]
        marks = ",".join("?" for _ in names)
        used = int(
            db.execute(
                f"SELECT COALESCE(SUM(pgsize - unused), 0) FROM dbstat WHERE name IN ({marks})",
                names,
            ).fetchone()[0]
        )
    finally:
        db.close()
    return (used / rows if rows else float("nan")), rows


def readings_between(journal: Path, t0: float, t1: float) -> int:
    """Readings the gateway received between wall times t0 and t1 (received_ns)."""
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(
            db.execute(
                "SELECT COUNT(*) FROM readings WHERE received_ns >= ? AND received_ns < ?",
                (int(t0 * 1e9), int(t1 * 1e9)),
            ).fetchone()[0]
        )
    finally:
        db.close()
