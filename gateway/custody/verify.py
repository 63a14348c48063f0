"""Verify the custody hash chain in the journal and in InfluxDB (``coldchain verify``).

A chain is intact when its records carry seq 1, 2, 3, ... without gaps, each ``prev_hash``
is the previous record's ``hash`` (64 zeros for seq 1), and each ``hash`` is the SHA-256 of
the record's canonical form (``gateway.custody.chain``, docs/custody-records.md). The first record
that fails is named with its seq, shipment, event and time.

What one chain on its own cannot show: records cut off at the end, or a chain rewritten
from some record on with freshly computed hashes. ``run_verify`` therefore also compares
the two copies when both are checked (same hash at every common seq; InfluxDB holding at
least what its forwarder cursor says it confirmed; the journal at least what InfluxDB has).

The command itself (arguments, output, exit codes) is ``gateway.apps.verify_cli``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.core.clock import iso_utc
from gateway.core.errors import GatewayError, JournalError
from gateway.core.model import IDENTIFIER_PATTERN
from gateway.custody.chain import (
    GENESIS_HASH,
    HandoffLike,
    HandoffRecord,
    hashed_fields,
    record_hash,
)
from gateway.custody.ledger import CustodyLedger
from gateway.influxql.client import InfluxQLClient, InfluxQueryError, quote_ident, quote_literal

HUB_ID_PATTERN = re.compile(IDENTIFIER_PATTERN)
"""The config's identifier pattern (gateway.config.Identifier)."""

INFLUX_PAGE = 10_000
FORWARDER_SINK = "influx"
CUSTODY_STREAM = "custody"


class VerifyError(GatewayError):
    """A source could not be read (InfluxDB down, query refused); nothing was verified."""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of checking one chain; the identity fields name where the check stopped."""

    source: str
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    shipment: str | None = None
    event: str | None = None
    ts_ns: int | None = None
    last_seq: int = 0

    def describe(self) -> str:
        """One line for logs and the CLI."""
        if self.ok:
            return f"{self.source}: OK, {self.checked} record(s), last seq {self.last_seq}"
        where = f"seq {self.first_bad_seq}" if self.first_bad_seq is not None else "record"
        ident = ", ".join(
            part
            for part in (
                self.shipment,
                self.event,
                iso_utc(self.ts_ns) if self.ts_ns is not None else None,
            )
            if part
        )
        return (
            f"{self.source}: FAILED at {where}"
            + (f" ({ident})" if ident else "")
            + (f": {self.reason}")
        )


def failed_result(
    source: str, checked: int, seq: int | None, reason: str, record: HandoffLike | None
) -> VerifyResult:
    """A failed check: where, how many records were fine, the first bad one and why."""
    return VerifyResult(
        source=source,
        ok=False,
        checked=checked,
        first_bad_seq=seq,
        reason=reason,
        shipment=None if record is None else record.shipment,
        event=None if record is None else record.event,
        ts_ns=None if record is None else record.ts_ns,
        last_seq=0 if record is None else record.seq,
    )


def verify_chain(
    records: Iterable[HandoffLike],
    hub: str,
    *,
    source: str = "records",
    expect_last: int | None = None,
) -> VerifyResult:
    """Check records in the order given (seq 1 first); stops at the first that fails.

    ``expect_last``: the chain must reach at least this seq (a cut-off tail is otherwise
    invisible).
    """
    expected = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for record in records:
        problem = _link_problem(record, hub, expected, prev_hash)
        if problem is not None:
            return failed_result(source, checked, problem[0], problem[1], record)
        checked += 1
        prev_hash = record.hash
        expected += 1
    last = expected - 1
    if expect_last is not None and last < expect_last:
        return VerifyResult(
            source,
            False,
            checked,
            first_bad_seq=last + 1,
            reason=f"missing record: chain ends at seq {last}, expected up to {expect_last}",
            last_seq=last,
        )
    return VerifyResult(source, True, checked, last_seq=last)


def _link_problem(
    record: HandoffLike, hub: str, expected: int, prev_hash: str
) -> tuple[int, str] | None:
    """(seq to name, reason) when the record does not continue the chain, else None."""
    if record.hub != hub:
        return record.seq, f"hub is {record.hub!r}, not {hub!r}"
    if record.seq != expected:
        kind = "sequence gap" if record.seq > expected else "duplicate or out-of-order seq"
        missing = " (missing record)" if record.seq > expected else ""
        return expected, f"{kind}: expected {expected} got {record.seq}{missing}"
    if record.prev_hash != prev_hash:
        link = "the genesis hash" if expected == 1 else f"seq {expected - 1}"
        return record.seq, f"prev_hash does not link to {link}"
    try:
        digest = record_hash(hashed_fields(record))
    except ValueError as exc:
        return record.seq, f"malformed record: {exc}"
    return None if digest == record.hash else (record.seq, "hash mismatch")


def journal_records(ledger: CustodyLedger, page: int = 1000) -> Iterator[HandoffRecord]:
    """Every handoff record in the journal, by seq, read page by page."""
    after = 0
    while True:
        batch = ledger.handoff_records_after(after, page)
        if not batch:
            return
        yield from batch
        after = batch[-1].seq


def verify_journal(ledger: CustodyLedger, *, expect_last: int | None = None) -> VerifyResult:
    """Check the journal's chain, and that every accepted event has its handoff record."""
    result = verify_chain(
        journal_records(ledger), ledger.hub, source="journal", expect_last=expect_last
    )
    if not result.ok:
        return result
    stray = ledger.unchained(1)
    if stray:
        row = stray[0]
        return VerifyResult(
            "journal",
            False,
            result.checked,
            reason=f"accepted event (row id {row.id}) has no seq/hash: removed from the chain",
            shipment=row.shipment,
            event=row.kind,
            ts_ns=row.ts_ns,
            last_seq=result.last_seq,
        )
    return result


# -- InfluxDB ------------------------------------------------------------------------------


def check_hub_id(hub: str) -> str:
    """The hub id if it matches the config's identifier pattern; ValueError otherwise."""
    if not isinstance(hub, str) or HUB_ID_PATTERN.fullmatch(hub) is None:
        msg = f"invalid hub id {hub!r}: expected {HUB_ID_PATTERN.pattern}"
        raise ValueError(msg)
    return hub


def custody_query(hub: str, client: InfluxQLClient) -> str:
    """The InfluxQL that selects a hub's custody points (ordered and paged by the client)."""
    check_hub_id(hub)
    where = f"{quote_ident('hub')} = {quote_literal(hub)}"
    return f"SELECT * FROM {client.target('custody')} WHERE {where}"


class _Malformed(Exception):
    def __init__(self, reason: str, row: Mapping[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.row = row


def _opt_str(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(f"field {key} is not a string", row)
    return value


def _req(row: Mapping[str, Any], key: str) -> str:
    value = _opt_str(row, key)
    if value is None:
        raise _Malformed(f"lacks {key}", row)
    return value


def _int(row: Mapping[str, Any], key: str) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Malformed(f"field {key} is not an integer ({value!r})", row)
    return value


def record_from_influx(row: Mapping[str, Any]) -> HandoffRecord:
    """A custody point (columns of ``SELECT *``, epoch=ns) as a handoff record."""
    temp = row.get("temp_c")
    if temp is not None and (isinstance(temp, bool) or not isinstance(temp, int | float)):
        raise _Malformed(f"field temp_c is not a number ({temp!r})", row)
    return HandoffRecord(
        hub=_req(row, "hub"),
        seq=_int(row, "seq"),
        shipment=_req(row, "shipment"),
        event=_req(row, "event"),
        zone=_req(row, "zone"),
        actor=_req(row, "actor"),
        carrier=_opt_str(row, "carrier"),
        profile=_opt_str(row, "profile"),
        note=_opt_str(row, "note"),
        ts_ns=_int(row, "time"),
        # InfluxDB's JSON writes a float field 5.0 as 5: the field is a float all the same.
        temp_c=None if temp is None else float(temp),
        prev_hash=_req(row, "prev_hash"),
        hash=_req(row, "hash"),
        signer=_opt_str(row, "signer"),
    )


def read_influx_rows(client: InfluxQLClient, hub: str) -> list[dict[str, Any]]:
    """Every custody point of the hub as a dict of columns, oldest first (paged)."""
    try:
        return client.paged_rows(custody_query(hub, client), page=INFLUX_PAGE)
    except InfluxQueryError as exc:
        raise VerifyError(str(exc)) from exc


def verify_influx_rows(
    rows: Iterable[Mapping[str, Any]], hub: str, *, expect_last: int | None = None
) -> tuple[VerifyResult, list[HandoffRecord]]:
    """Check custody points read from InfluxDB (re-ordered by seq); also returns the records."""
    records: list[HandoffRecord] = []
    for row in rows:
        try:
            records.append(record_from_influx(row))
        except _Malformed as exc:
            time = row.get("time")
            result = VerifyResult(
                "influx",
                False,
                0,
                reason=f"malformed custody point: {exc.reason}",
                shipment=row.get("shipment") if isinstance(row.get("shipment"), str) else None,
                event=row.get("event") if isinstance(row.get("event"), str) else None,
                ts_ns=time if isinstance(time, int) else None,
            )
            return result, records
    # Time order is not chain order (an event can be recorded late); the chain is by seq.
    records.sort(key=lambda r: (r.seq, r.ts_ns))
    return verify_chain(records, hub, source="influx", expect_last=expect_last), records


def verify_influx(
    url: str,
    database: str,
    hub: str,
    *,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    retention_policy: str | None = None,
    timeout_s: float = 10.0,
    verify_tls: bool = True,
    ca_file: str | None = None,
    expect_last: int | None = None,
) -> VerifyResult:
    """Read the hub's ``custody`` points over ``/query`` and check the chain.

    ValueError for a hub id outside the config pattern; VerifyError when InfluxDB cannot
    be read.
    """
    client = InfluxQLClient(
        url=url,
        database=database,
        username=username,
        password=password,
        token=token,
        retention_policy=retention_policy,
        timeout_s=timeout_s,
        verify_tls=verify_tls,
        ca_file=ca_file,
    )
    try:
        rows = read_influx_rows(client, hub)
    finally:
        client.close()
    result, _ = verify_influx_rows(rows, hub, expect_last=expect_last)
    return result


def cross_check(journal: Sequence[HandoffRecord], influx: Sequence[HandoffRecord]) -> VerifyResult:
    """Two intact chains must agree: same hash at every seq both hold."""
    by_seq = {r.seq: r for r in journal}
    checked = 0
    for record in influx:
        mine = by_seq.get(record.seq)
        if mine is None:
            continue
        if mine.hash != record.hash:
            return failed_result(
                "journal vs influx",
                checked,
                record.seq,
                "the two copies differ (one chain was rewritten)",
                mine,
            )
        checked += 1
    last = max((r.seq for r in influx), default=0)
    return VerifyResult("journal vs influx", True, checked, last_seq=last)


# -- the command ---------------------------------------------------------------------------


def check_journal(
    journal_path: Path, config: GatewayConfig
) -> tuple[VerifyResult, list[HandoffRecord], int]:
    """The journal's chain check, its records and the forwarder's custody cursor."""
    from gateway.journal.integrity import integrity_problems
    from gateway.journal.store import Journal

    # A page the chain walk never touches can still be damaged: never OK for such a file.
    problems = integrity_problems(journal_path)
    if problems:
        msg = f"journal {journal_path} fails integrity_check: {'; '.join(problems[:5])}"
        raise JournalError(msg)
    journal = Journal.open_readonly(journal_path)
    try:
        ledger = CustodyLedger(
            journal.connection,
            config.hub.id,
            {z.id for z in config.zones},
            set(config.all_profiles()),
            readonly=True,
        )
        result = verify_journal(ledger)
        return result, list(journal_records(ledger)), journal.cursor(FORWARDER_SINK, CUSTODY_STREAM)
    finally:
        journal.close()
