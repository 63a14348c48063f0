"""``coldchain verify``: check the custody hash chain in the journal and/or InfluxDB.

The checks are ``gateway.custody.verify``; this module reads the sources, compares the
two copies and renders the result.

Exit codes: 0 every chain intact, 1 tampering or a missing record found, 2 config error
(bad file, unknown source, journal file missing), 3 a source could not be read (InfluxDB
down, refused query).
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gateway.config import load_config
from gateway.core.clock import iso_utc
from gateway.core.errors import ConfigError, JournalError
from gateway.custody.chain import HandoffRecord
from gateway.custody.verify import (
    VerifyError,
    VerifyResult,
    check_journal,
    cross_check,
    failed_result,
    read_influx_rows,
    verify_influx_rows,
)
from gateway.influxql.client import InfluxQLClient


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``coldchain verify``."""
    p.add_argument("--config", required=True, help="the gateway config file (TOML)")
    p.add_argument(
        "--source",
        choices=("journal", "influx", "both"),
        default=None,
        help="which copy to check (default: both when [sinks.influx] is set, else journal)",
    )
    from gateway.evidence.cli import add_evidence_verify_arguments

    add_evidence_verify_arguments(p)


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
            rows = read_influx_rows(InfluxQLClient.from_config(influx_config), config.hub.id)
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

    from gateway.evidence.cli import evidence_rows

    evidence = evidence_rows(config, args, source)
    unreadable += evidence.unreadable
    table = Table(title=f"custody chain and evidence of hub {config.hub.id}")
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
    for row in evidence.rows:
        table.add_row(*row)
    out.print(table)
    for line in evidence.lines:
        out.print(line, markup=False, highlight=False)
    for r in results:
        out.print(r.describe(), markup=False, highlight=False)
    for problem in unreadable:
        err.print(f"cannot verify {problem}", markup=False, highlight=False)
    if any(not r.ok for r in results) or not evidence.ok:
        return 1
    if unreadable:
        return 3
    return 4 if evidence.unanchored and args.require_signed else 0


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
            failed_result("journal vs influx", crossed.checked, first, reason, found),
            last_seq=crossed.last_seq,
        )
    return crossed
