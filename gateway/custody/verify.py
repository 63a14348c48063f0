"""Verify the custody hash chain in the journal and in InfluxDB (``coldchain verify``).

A chain is intact when its records carry seq 1, 2, 3, ... without gaps, each ``prev_hash``
is the previous record's ``hash`` (64 zeros for seq 1), and each ``hash`` is the SHA-256 of
the record's canonical form (``gateway.custody.chain``, docs/custody-records.md). The first record
that fails is named with its seq, shipment, event and time.

What one chain on its own cannot show: records cut off at the end, or a chain rewritten
from some record on with freshly computed hashes. ``run_verify`` therefore also compares
the two copies when both are checked (same hash at every common seq; InfluxDB holding at
least what its forwarder cursor says it confirmed; the journal at least what InfluxDB has).

Exit codes of ``coldchain verify``: 0 every chain intact, 1 tampering or a missing record
found, 2 config error (bad file, unknown source, journal file missing), 3 a source could not
be read (InfluxDB down, refused query).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError

from gateway.config import GatewayConfig, InfluxSinkConfig, load_config
from gateway.core.clock import iso_utc
from gateway.core.errors import ConfigError, GatewayError, JournalError
from gateway.custody.chain import (
    GENESIS_HASH,
    HandoffLike,
    HandoffRecord,
    hashed_fields,
    record_hash,
)
from gateway.custody.ledger import CustodyLedger

HUB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
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


def _bad(
    source: str, checked: int, seq: int | None, reason: str, record: HandoffLike | None
) -> VerifyResult:
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
            return _bad(source, checked, problem[0], problem[1], record)
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


def influxql_string(value: str) -> str:
    """An InfluxQL string literal: single quotes, ``\\`` and ``'`` backslash-escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def influxql_identifier(name: str) -> str:
    """An InfluxQL identifier in double quotes, ``\\`` and ``"`` backslash-escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_hub_id(hub: str) -> str:
    """The hub id if it matches the config's identifier pattern; ValueError otherwise."""
    if not isinstance(hub, str) or HUB_ID_PATTERN.fullmatch(hub) is None:
        msg = f"invalid hub id {hub!r}: expected {HUB_ID_PATTERN.pattern}"
        raise ValueError(msg)
    return hub


def custody_query(hub: str, *, database: str, retention_policy: str | None = None) -> str:
    """The InfluxQL that selects a hub's custody points, oldest first."""
    check_hub_id(hub)
    target = influxql_identifier("custody")
    if retention_policy:
        target = f"{influxql_identifier(database)}.{influxql_identifier(retention_policy)}.{target}"
    return f"SELECT * FROM {target} WHERE {influxql_identifier('hub')} = {influxql_string(hub)}"


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
    )


@dataclass(frozen=True, slots=True)
class InfluxSource:
    """Where and how to query InfluxDB (the ``/query`` endpoint, InfluxQL)."""

    url: str
    database: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    retention_policy: str | None = None
    timeout_s: float = 10.0
    verify_tls: bool = True
    ca_file: str | None = None

    @classmethod
    def from_config(cls, config: InfluxSinkConfig) -> InfluxSource:
        """From ``[sinks.influx]``; with api v2 the bucket is the database (DBRP mapping)."""
        database = config.database if config.api == "v1" else (config.bucket or config.database)
        return cls(
            url=config.url,
            database=database,
            username=config.username,
            password=config.password.resolve() if config.password is not None else None,
            token=config.token.resolve() if config.token is not None else None,
            retention_policy=config.retention_policy,
            timeout_s=config.timeout_s,
            verify_tls=config.verify_tls,
            ca_file=config.ca_file,
        )

    def headers(self) -> dict[str, str]:
        """Basic auth for a username, ``Token`` for a token, else none."""
        if self.username:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
        if self.token:
            return {"Authorization": f"Token {self.token}"}
        return {}


def read_influx_rows(source: InfluxSource, hub: str) -> list[dict[str, Any]]:
    """Every custody point of the hub as a dict of columns, oldest first (paged)."""
    query = custody_query(hub, database=source.database, retention_policy=source.retention_policy)
    tls: dict[str, Any] = {}
    if source.url.startswith("https://"):
        tls["cert_reqs"] = "CERT_REQUIRED" if source.verify_tls else "CERT_NONE"
        if source.ca_file:
            tls["ca_certs"] = source.ca_file
    pool = urllib3.PoolManager(
        retries=False, timeout=urllib3.Timeout(total=source.timeout_s), **tls
    )
    url = source.url.rstrip("/") + "/query"
    rows: list[dict[str, Any]] = []
    try:
        offset = 0
        while True:
            page = f"{query} ORDER BY time ASC LIMIT {INFLUX_PAGE} OFFSET {offset}"
            fields = {"q": page, "db": source.database, "epoch": "ns"}
            try:
                resp = pool.request("GET", url, fields=fields, headers=source.headers())
            except HTTPError as exc:
                msg = f"InfluxDB at {source.url} cannot be reached: {exc}"
                raise VerifyError(msg) from exc
            batch = _rows_of(resp.status, resp.data, source.url)
            rows.extend(batch)
            if len(batch) < INFLUX_PAGE:
                return rows
            offset += INFLUX_PAGE
    finally:
        pool.clear()


def _rows_of(status: int, body: bytes, url: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        msg = f"InfluxDB at {url} answered {status} with non-JSON: {body[:200]!r}"
        raise VerifyError(msg) from exc
    errors = [doc["error"]] if isinstance(doc, dict) and "error" in doc else []
    results = doc.get("results", []) if isinstance(doc, dict) else []
    errors += [r["error"] for r in results if "error" in r]
    if status != 200 or errors:
        msg = f"InfluxDB at {url} refused the query ({status}): {'; '.join(map(str, errors))}"
        raise VerifyError(msg)
    out: list[dict[str, Any]] = []
    for result in results:
        for series in result.get("series", []):
            tags = series.get("tags", {})
            for values in series.get("values", []):
                row = dict(tags)
                row.update(zip(series["columns"], values, strict=True))
                out.append(row)
    return out


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
    source = InfluxSource(
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
    result, _ = verify_influx_rows(read_influx_rows(source, hub), hub, expect_last=expect_last)
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
            return _bad(
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


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``coldchain verify``."""
    p.add_argument("--config", required=True, help="the gateway config file (TOML)")
    p.add_argument(
        "--source",
        choices=("journal", "influx", "both"),
        default=None,
        help="which copy to check (default: both when [sinks.influx] is set, else journal)",
    )


def check_journal(
    journal_path: Path, config: GatewayConfig
) -> tuple[VerifyResult, list[HandoffRecord], int]:
    """The journal's chain check, its records and the forwarder's custody cursor."""
    from gateway.journal.store import Journal

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


def run_verify(args: argparse.Namespace) -> int:
    """``coldchain verify``: 0 intact, 1 tampering found, 2 config error, 3 source unreadable."""
    from rich.console import Console
    from rich.table import Table

    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        err.print(f"[red]{args.config}: {exc}[/red]", markup=True, highlight=False)
        for path, msg in exc.problems:
            err.print(f"  {path}: {msg}", markup=False, highlight=False)
        return 2
    influx_config = config.sinks.influx
    source = args.source or ("both" if influx_config is not None else "journal")
    if source in ("influx", "both") and influx_config is None:
        err.print(f"{args.config}: --source {source} needs [sinks.influx]", markup=False)
        return 2
    journal_path = Path(config.journal.path)
    if source in ("journal", "both") and not journal_path.exists():
        err.print(f"journal {journal_path} does not exist (journal.path)", markup=False)
        return 2

    results: list[VerifyResult] = []
    unreadable: list[str] = []
    journal_chain: list[HandoffRecord] = []
    cursor = 0
    if source in ("journal", "both"):
        try:
            journal_result, journal_chain, cursor = check_journal(journal_path, config)
            results.append(journal_result)
        except (JournalError, sqlite3.Error) as exc:
            unreadable.append(f"journal: {exc}")
    if source in ("influx", "both"):
        assert influx_config is not None
        try:
            rows = read_influx_rows(InfluxSource.from_config(influx_config), config.hub.id)
        except (VerifyError, ConfigError) as exc:
            unreadable.append(f"influx: {exc}")
        else:
            # The forwarder's cursor is the last seq InfluxDB confirmed: it must hold them all.
            result, influx_chain = verify_influx_rows(
                rows, config.hub.id, expect_last=cursor or None
            )
            results.append(_name_missing(result, journal_chain))
            if source == "both" and results[0].ok and result.ok:
                results.append(_compare(journal_chain, influx_chain, results[0]))

    table = Table(title=f"custody chain of hub {config.hub.id}")
    table.add_column("source", no_wrap=True)
    table.add_column("checked", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("first bad record (seq, shipment, event, time)", overflow="fold")
    table.add_column("reason", overflow="fold")
    for r in results:
        ident = [
            "" if r.first_bad_seq is None else f"seq {r.first_bad_seq}",
            r.shipment or "",
            r.event or "",
            iso_utc(r.ts_ns) if r.ts_ns is not None else "",
        ]
        table.add_row(
            r.source,
            str(r.checked),
            "[green]OK[/green]" if r.ok else "[bold red]TAMPERED[/bold red]",
            "\n".join(part for part in ident if part),
            r.reason or "",
        )
    out.print(table)
    for r in results:
        out.print(r.describe(), markup=False, highlight=False)
    for problem in unreadable:
        err.print(f"cannot verify {problem}", markup=False, highlight=False)
    if any(not r.ok for r in results):
        return 1
    return 3 if unreadable else 0


def _name_missing(result: VerifyResult, journal_chain: Sequence[HandoffRecord]) -> VerifyResult:
    """A record missing from InfluxDB is named from the journal's copy when there is one."""
    if result.ok or result.first_bad_seq is None:
        return result
    reason = result.reason or ""
    if not (reason.startswith(("sequence gap", "missing record"))):
        return result
    for record in journal_chain:
        if record.seq == result.first_bad_seq:
            return replace(result, shipment=record.shipment, event=record.event, ts_ns=record.ts_ns)
    return result


def _compare(
    journal_chain: Sequence[HandoffRecord],
    influx_chain: Sequence[HandoffRecord],
    journal_result: VerifyResult,
) -> VerifyResult:
    crossed = cross_check(journal_chain, influx_chain)
    if crossed.ok and crossed.last_seq > journal_result.last_seq:
        first = journal_result.last_seq + 1
        found = next((r for r in influx_chain if r.seq == first), None)
        reason = (
            f"missing record: InfluxDB holds up to seq {crossed.last_seq},"
            f" the journal ends at {journal_result.last_seq}"
        )
        return replace(
            _bad("journal vs influx", crossed.checked, first, reason, found),
            last_seq=crossed.last_seq,
        )
    return crossed
