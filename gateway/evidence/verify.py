"""Check the evidence chain, every checkpoint signature, and the copies outside the box.

Three layers, each naming the first record that does not match:

1. **Rows against their tags** (``check_chain``): every row of a chained table must hash
   to the tag its seal entry holds; a row missing from a sealed span is a deletion unless
   a ``removal`` entry (retention, disk budget) accounts for it; a row inside the sealed
   ranges that no entry covers is an insertion; every entry's head must be the hash of
   its header and the previous head. An edit that left the chain alone is named exactly
   (table, id, and what the row says).
2. **Signatures** (``check_checkpoints``): every checkpoint (journal, InfluxDB, a saved
   planner export) must carry a valid Ed25519 signature of the hub key and name a head
   the chain holds at that seq. A chain recomputed after an edit no longer matches the
   heads signed before it; a chain cut short ends before a signed seq.
3. **External copies**: checkpoints held by InfluxDB or the planner cannot be rewritten
   from the hub, so with the key stolen a rewrite before the last external checkpoint
   is still found (docs/evidence.md: threat model).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core.clock import iso_utc
from gateway.evidence import checkpoint as cp
from gateway.evidence.chain import (
    GENESIS_HEAD,
    TAG_BYTES,
    ChainEntry,
    Span,
    canonical_row,
    entries,
    entry_head,
    existing_tables,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from gateway.influxql.client import InfluxQLClient


@dataclass(frozen=True, slots=True)
class Finding:
    """The first thing that does not match, named for a person."""

    source: str
    record: str  # "readings id 1234 (sensor ..., ...)", "chain entry 17", "checkpoint ..."
    reason: str

    def describe(self) -> str:
        """One line."""
        return f"{self.source}: {self.record}: {self.reason}"


@dataclass(slots=True)
class ChainReport:
    """What the chain check saw."""

    entries: int = 0
    seq: int = 0
    head: str = GENESIS_HEAD
    heads: dict[int, str] = field(default_factory=dict)
    rows_checked: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)  # rows gone by a recorded removal
    unsealed: dict[str, int] = field(default_factory=dict)
    spans_by_seq: dict[int, dict[str, Span]] = field(default_factory=dict)
    finding: Finding | None = None
    present: bool = True  # False: a journal without the evidence chain


def describe_row(table: str, row: Mapping[str, Any] | None, row_id: int) -> str:
    """A record as a claims handler would name it."""
    base = f"{table} id {row_id}"
    if row is None:
        return base
    parts: list[str] = []
    if table == "readings":
        parts = [
            f"sensor {row.get('sensor')}",
            f"zone {row.get('zone')}",
            iso_utc(int(row["ts_ns"])) if row.get("ts_ns") is not None else "",
            f"{row.get('temp_c')} °C",
        ]
    elif table == "custody_events":
        parts = [
            f"shipment {row.get('shipment')}",
            str(row.get("kind")),
            f"seq {row.get('seq')}" if row.get("seq") is not None else "",
            iso_utc(int(row["ts_ns"])) if row.get("ts_ns") is not None else "",
        ]
    elif table == "alert_events":
        parts = [
            f"alert {row.get('alert_id')}",
            str(row.get("kind")),
            iso_utc(int(row["at_ns"])) if row.get("at_ns") is not None else "",
        ]
    elif table == "config_log":
        parts = [str(row.get("kind")), f"fingerprint {str(row.get('fingerprint'))[:16]}"]
    else:
        for key in ("received_ns", "at_ns", "ts_ns"):
            if row.get(key) is not None:
                parts.append(iso_utc(int(row[key])))
                break
    text = ", ".join(p for p in parts if p)
    return f"{base} ({text})" if text else base


def _has_chain(db: sqlite3.Connection) -> bool:
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='evidence_chain'"
    ).fetchone()
    return row is not None


def check_chain(db: sqlite3.Connection) -> ChainReport:
    """Walk every entry and every covered row; stops at the first mismatch."""
    report = ChainReport()
    if not _has_chain(db):
        report.present = False
        return report
    all_entries = list(entries(db))
    removals: dict[str, list[tuple[int, int]]] = {}
    for entry in all_entries:
        if entry.kind == "removal":
            for table, (_, up_to, rows) in entry.spans.items():
                removals.setdefault(table, []).append((up_to, rows))
    prev = GENESIS_HEAD
    sealed_up_to: dict[str, int] = {}
    for expected, entry in enumerate(all_entries, start=1):
        if entry.seq != expected:
            kind = "missing entry" if entry.seq > expected else "duplicate entry"
            report.finding = Finding(
                "journal", f"chain entry {expected}", f"{kind} (got seq {entry.seq})"
            )
            return report
        head = entry_head(
            entry.seq, entry.at_ns, entry.kind, entry.spans, entry.tags, entry.note, prev
        )
        if head != entry.head:
            report.finding = Finding(
                "journal",
                f"chain entry {entry.seq} ({iso_utc(entry.at_ns)})",
                "its head is not the hash of its header and the previous head (entry edited,"
                " or an entry before it removed)",
            )
            return report
        if entry.kind == "seal":
            finding = _check_rows(db, entry, sealed_up_to, removals, report)
            if finding is not None:
                report.finding = finding
                return report
        report.heads[entry.seq] = entry.head
        report.spans_by_seq[entry.seq] = dict(entry.spans)
        prev = entry.head
        report.entries += 1
        report.seq = entry.seq
        report.head = entry.head
    for table in existing_tables(db):
        last = sealed_up_to.get(table, 0)
        n = db.execute(f"SELECT COUNT(*) FROM {table} WHERE id > ?", (last,)).fetchone()[0]
        if n:
            report.unsealed[table] = int(n)
    return report


def _table_exists(db: sqlite3.Connection, table: str) -> bool:
    return (
        db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
        is not None
    )


def _check_rows(
    db: sqlite3.Connection,
    entry: ChainEntry,
    sealed_up_to: dict[str, int],
    removals: Mapping[str, Sequence[tuple[int, int]]],
    report: ChainReport,
) -> Finding | None:
    offset = 0
    for table, (first, last, count) in sorted(entry.spans.items()):
        tags = entry.tags[offset : offset + count * TAG_BYTES]
        offset += count * TAG_BYTES
        where = f"sealed in chain entry {entry.seq} at {iso_utc(entry.at_ns)}"
        if not _table_exists(db, table):
            return Finding("journal", f"table {table}", f"is gone ({where})")
        cur = db.execute(
            f"SELECT * FROM {table} WHERE id > ? AND id <= ? ORDER BY id",
            (sealed_up_to.get(table, 0), last),
        )
        columns = [d[0] for d in cur.description]
        ids = columns.index("id")
        rows = {int(r[ids]): r for r in cur.fetchall()}
        inserted = [i for i in rows if i < first]
        if inserted:
            row = rows[inserted[0]]
            return Finding(
                "journal",
                describe_row(table, dict(zip(columns, row, strict=True)), inserted[0]),
                "inserted: no seal covers this row",
            )
        dense = last - first + 1 == count
        expected_ids = range(first, last + 1) if dense else sorted(rows)
        if not dense and len(rows) != count:
            return Finding(
                "journal",
                f"{table} ids {first}..{last}",
                f"{count} rows were sealed, {len(rows)} are there ({where})",
            )
        for index, row_id in enumerate(expected_ids):
            row = rows.get(row_id)
            if row is None:
                if any(up_to >= row_id for up_to, _ in removals.get(table, ())):
                    report.removed[table] = report.removed.get(table, 0) + 1
                    continue
                before = rows.get(row_id - 1)
                near = ""
                if before is not None:
                    named = describe_row(table, dict(zip(columns, before, strict=True)), row_id - 1)
                    near = f"; the row before it is {named}"
                return Finding("journal", f"{table} id {row_id}", f"deleted ({where}){near}")
            tag = _tag(table, columns, row)
            if tag != tags[index * TAG_BYTES : (index + 1) * TAG_BYTES]:
                return Finding(
                    "journal",
                    describe_row(table, dict(zip(columns, row, strict=True)), row_id),
                    f"altered: the row does not match the tag {where}",
                )
            report.rows_checked[table] = report.rows_checked.get(table, 0) + 1
        sealed_up_to[table] = last
    return None


def _tag(table: str, columns: Sequence[str], row: Sequence[object]) -> bytes:
    import hashlib

    return hashlib.sha256(canonical_row(table, columns, row)).digest()[:TAG_BYTES]


# -- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointReport:
    """Checkpoints of one source against the chain."""

    source: str
    checked: int
    last: cp.Checkpoint | None
    finding: Finding | None


def check_checkpoints(
    source: str,
    checkpoints: Iterable[cp.Checkpoint],
    chain: ChainReport,
    public: Ed25519PublicKey | None,
    hub: str,
) -> CheckpointReport:
    """Each checkpoint signed by the hub key and naming a head the chain holds.

    Without a public key nothing is checked (``checked`` stays 0: not anchored).
    """
    from gateway.core.keys import fingerprint, public_raw

    if public is None:
        return CheckpointReport(source, 0, None, None)
    expected_key = fingerprint(public_raw(public))
    checked = 0
    last: cp.Checkpoint | None = None
    ordered = sorted(checkpoints, key=lambda c: (c.seq, c.at_ns))
    for point in ordered:
        problem = _point_problem(point, ordered, chain, public, expected_key, hub)
        if problem is not None:
            name = f"checkpoint of {iso_utc(point.at_ns)} ({point.reason}, chain entry {point.seq})"
            return CheckpointReport(source, checked, last, Finding(source, name, problem))
        checked += 1
        last = point
    return CheckpointReport(source, checked, last, None)


def _point_problem(
    point: cp.Checkpoint,
    ordered: Sequence[cp.Checkpoint],
    chain: ChainReport,
    public: Ed25519PublicKey,
    expected_key: str,
    hub: str,
) -> str | None:
    if point.hub != hub:
        return f"hub is {point.hub!r}, not {hub!r}"
    if not point.signature:
        return "not signed"
    if point.key != expected_key or not point.verify(public):
        return (
            f"signature is not the hub key's (key {point.key or 'none'}, expected {expected_key})"
        )
    if point.seq > chain.seq:
        return (
            f"the journal's chain ends at entry {chain.seq}, but this signed checkpoint covers"
            f" up to entry {point.seq} ({_rows_text(point.rows)}): {_lost(point, chain)}"
            " removed from the tail"
        )
    held = chain.heads.get(point.seq, GENESIS_HEAD if point.seq == 0 else None)
    if held != point.head:
        prior = max(
            (c.seq for c in ordered if c.seq < point.seq and chain.heads.get(c.seq) == c.head),
            default=0,
        )
        return (
            f"the chain was rewritten: its entry {point.seq} has another head than the one"
            f" signed; the change lies in {_records_between(chain, prior, point.seq)}"
        )
    return None


def _rows_text(rows: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {t}" for t, n in sorted(rows.items())) or "no rows"


def _lost(point: cp.Checkpoint, chain: ChainReport) -> str:
    sealed = {t: 0 for t in point.rows}
    for spans in chain.spans_by_seq.values():
        for t, (_, _, n) in spans.items():
            if t in sealed and spans is not None:
                sealed[t] += n
    lost = {
        t: point.rows[t] - sealed.get(t, 0) for t in point.rows if point.rows[t] > sealed.get(t, 0)
    }
    return _rows_text(lost) if lost else "entries (no rows)"


def _records_between(chain: ChainReport, after_seq: int, up_to_seq: int) -> str:
    """The records sealed in entries after_seq+1 .. up_to_seq, as id ranges per table."""
    ranges: dict[str, list[int]] = {}
    for seq in range(after_seq + 1, up_to_seq + 1):
        for table, (first, last, _) in chain.spans_by_seq.get(seq, {}).items():
            if first == 0:
                continue  # a removal entry
            lo_hi = ranges.setdefault(table, [first, last])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], first), max(lo_hi[1], last)
    spans = ", ".join(f"{t} id {a}..{b}" for t, (a, b) in sorted(ranges.items()))
    where = f"chain entries {after_seq + 1}..{up_to_seq}"
    return f"{where} ({spans})" if spans else where


# -- external copies -------------------------------------------------------------------------


def checkpoints_from_export(path: Path) -> list[cp.Checkpoint]:
    """Checkpoints from a saved planner export: JSON lines, a JSON array, or
    ``mosquitto_sub -v`` lines (topic, a space, the payload); other messages are skipped."""
    out: list[cp.Checkpoint] = []
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    docs: list[Any] = []
    if stripped.startswith("["):
        docs = list(json.loads(stripped))
    else:
        for raw in text.splitlines():
            line = raw.strip()
            if not line.startswith("{") and " {" in line:
                line = line[line.index(" {") + 1 :]  # mosquitto_sub -v: "topic payload"
            try:
                docs.append(json.loads(line))
            except ValueError:
                continue
    for doc in docs:
        if isinstance(doc, dict) and doc.get("format") == cp.FORMAT:
            out.append(cp.from_json(doc))
    return out


def checkpoint_query(hub: str, client: InfluxQLClient) -> str:
    """InfluxQL for the hub's checkpoints, oldest first."""
    from gateway.custody.verify import check_hub_id
    from gateway.influxql.client import quote_ident, quote_literal

    check_hub_id(hub)
    target = client.target(cp.MEASUREMENT)
    return f"SELECT * FROM {target} WHERE {quote_ident('hub')} = {quote_literal(hub)}"


def checkpoints_from_influx(client: InfluxQLClient, hub: str) -> list[cp.Checkpoint]:
    """The hub's checkpoints held by InfluxDB (VerifyError when it cannot be read)."""
    from gateway.custody.verify import VerifyError
    from gateway.influxql.client import InfluxQueryError

    try:
        rows = client.paged_rows(checkpoint_query(hub, client))
    except InfluxQueryError as exc:
        raise VerifyError(str(exc)) from exc
    out: list[cp.Checkpoint] = []
    for row in rows:
        body = row.get("body")
        if not isinstance(body, str):
            continue
        try:
            out.append(cp.from_json({**json.loads(body), "signature": row.get("signature") or ""}))
        except (cp.CheckpointError, ValueError):
            continue
    return out


# -- everything at once (coldchain verify, the trace) ----------------------------------------


@dataclass(slots=True)
class EvidenceResult:
    """The evidence verdict: chain, signatures, external copies."""

    chain: ChainReport
    checkpoints: list[CheckpointReport] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    key_fingerprint: str | None = None
    key_source: str = ""

    @property
    def finding(self) -> Finding | None:
        """The first mismatch: the chain's own, else the first checkpoint source's."""
        if self.chain.finding is not None:
            return self.chain.finding
        return next((c.finding for c in self.checkpoints if c.finding is not None), None)

    @property
    def ok(self) -> bool:
        """No mismatch anywhere."""
        return self.finding is None

    @property
    def altered(self) -> bool:
        """For the trace: a detected alteration makes the verdict REJECT records_altered."""
        return self.finding is not None

    @property
    def anchored(self) -> bool:
        """At least one signed checkpoint checked against the chain."""
        return any(c.checked for c in self.checkpoints)

    @property
    def first_bad_seq(self) -> int | None:
        """The trace's ChainCheck reads this (custody seq; not known here)."""
        return None

    @property
    def reason(self) -> str:
        """One sentence for the trace."""
        found = self.finding
        if found is not None:
            return f"records altered: {found.describe()}"
        rows = sum(self.chain.rows_checked.values())
        signed = sum(c.checked for c in self.checkpoints)
        return f"{rows} records match their seals; {signed} signed checkpoint(s) match the chain"


def resolve_public_key(given: str | None, key_path: Path) -> tuple[Ed25519PublicKey | None, str]:
    """The key to check signatures with: --public-key, else hub-key.pub, else the private key."""
    from gateway.core.keys import KeyError_, load_private_key, parse_public_key

    if given:
        text = Path(given[1:]).read_text(encoding="utf-8") if given.startswith("@") else given
        if not given.startswith("@") and Path(given).is_file():
            text = Path(given).read_text(encoding="utf-8")
        return parse_public_key(text), "given"
    pub = key_path.with_suffix(".pub")
    if pub.is_file():
        return parse_public_key(pub.read_text(encoding="utf-8")), str(pub)
    try:
        return load_private_key(key_path).public_key(), str(key_path)
    except KeyError_:
        return None, "none"


def verify_evidence(
    journal_path: Path,
    hub: str,
    *,
    public: Ed25519PublicKey | None,
    influx: InfluxQLClient | None = None,
    exports: Sequence[Path] = (),
) -> EvidenceResult:
    """Check the journal's chain, its checkpoints, InfluxDB's and saved planner exports."""
    from gateway.custody.verify import VerifyError
    from gateway.journal.store import Journal

    journal = Journal.open_readonly(journal_path)
    try:
        db = journal.connection
        chain = check_chain(db)
        local = cp.stored_after(db, 0, 10**9)
    finally:
        journal.close()
    result = EvidenceResult(chain)
    if public is not None:
        from gateway.core.keys import fingerprint, public_raw

        result.key_fingerprint = fingerprint(public_raw(public))
    if not chain.present:
        return result
    result.checkpoints.append(check_checkpoints("journal checkpoints", local, chain, public, hub))
    if influx is not None:
        try:
            remote = checkpoints_from_influx(influx, hub)
        except (VerifyError, ValueError) as exc:
            result.unreadable.append(f"influx checkpoints: {exc}")
        else:
            result.checkpoints.append(
                check_checkpoints("influx checkpoints", remote, chain, public, hub)
            )
    for path in exports:
        try:
            saved = checkpoints_from_export(path)
        except (OSError, ValueError, cp.CheckpointError) as exc:
            result.unreadable.append(f"{path}: {exc}")
            continue
        result.checkpoints.append(
            check_checkpoints(f"planner export {path.name}", saved, chain, public, hub)
        )
    return result
