"""``coldchain trace SHIPMENT``: build the claim report and write PDF, CSV and JSON.

Exit codes:

- 0: the report was produced (whatever the verdict; the verdict is printed and is in the
  files). With ``--verdict-exit``: 0 accept, 4 review, 5 reject.
- 2: bad input: an invalid shipment id, an unknown shipment ("unknown shipment SH-X: no
  custody events"), an unknown profile, a config that does not load.
- 3: the data source failed: InfluxDB unreachable or refusing the query, no journal.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import CONFIG_HELP, DEFAULT_CONFIG, GatewayConfig, load_config
from gateway.core.clock import datetime_to_ns, iso_utc
from gateway.core.errors import ConfigError, GatewayError
from gateway.influxql.client import InfluxQLClient
from gateway.trace import DEFAULT_CONTEXT_S, build_trace
from gateway.trace.analysis import TraceResult
from gateway.trace.outputs import write_csv, write_json
from gateway.trace.query import (
    InfluxSource,
    JournalSource,
    TraceInputError,
    TraceSource,
    TraceSourceError,
    validate_id,
)

if TYPE_CHECKING:
    from rich.table import Table

# rich and reportlab load only when a trace runs: `coldchain run` shares this parser and
# must not pay their import time and memory on the edge box.

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_SOURCE = 3
VERDICT_EXIT = {"accept": 0, "review": 4, "reject": 5}


def add_trace_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``coldchain trace``."""
    p.add_argument("shipment", help="shipment id")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=CONFIG_HELP)
    p.add_argument(
        "--source",
        choices=["influx", "journal"],
        default="influx",
        help="read from InfluxDB ([sinks.influx] of the config) or the local journal",
    )
    p.add_argument("--out", default=".", help="directory for trace-<shipment>.pdf/.csv/.json")
    p.add_argument("--profile", help="product profile (default: the shipment's, else the zone's)")
    p.add_argument("--database", help="InfluxDB database (default: the sink's database)")
    p.add_argument(
        "--as-of",
        help="ISO 8601 time with offset ending an interval still open (default: now)",
    )
    p.add_argument(
        "--context-minutes",
        type=float,
        default=DEFAULT_CONTEXT_S / 60,
        help="readings of each zone this long before and after the shipment was there",
    )
    p.add_argument(
        "--verdict-exit",
        action="store_true",
        help="exit 0 accept, 4 review, 5 reject (default: 0 whenever a report is produced)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, summary or file list")


def _as_of(value: str | None) -> int:
    if value is None:
        return time.time_ns()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        msg = f"--as-of must look like 2026-01-01T08:00:00Z, got {value!r}"
        raise TraceInputError(msg) from exc
    if parsed.tzinfo is None:
        msg = f"--as-of needs a time zone (Z or +01:00), got {value!r}"
        raise TraceInputError(msg)
    return datetime_to_ns(parsed)


def open_source(args: argparse.Namespace, config: GatewayConfig) -> TraceSource:
    """The data source the arguments and the config name."""
    if args.source == "journal":
        return JournalSource(config.journal.path, config.hub.id)
    influx = config.sinks.influx
    if influx is None:
        msg = "the config has no [sinks.influx]; use --source journal or configure InfluxDB"
        raise TraceInputError(msg)
    client = InfluxQLClient.from_config(influx, database=args.database)
    return InfluxSource(client, config.hub.id)


def chain_result(config: GatewayConfig, args: argparse.Namespace) -> Any | None:
    """The hub's custody hash-chain check from gateway.custody.verify, on the trace's source.

    None when the chain could not be read (the report then says "not verified").
    The journal check opens the journal the way ``coldchain verify`` does.
    """
    from gateway.custody import verify

    try:
        if args.source == "influx":
            influx = config.sinks.influx
            if influx is None:
                return None
            client = InfluxQLClient.from_config(influx, database=args.database)
            try:
                rows = verify.read_influx_rows(client, config.hub.id)
            finally:
                client.close()
            result, _ = verify.verify_influx_rows(rows, config.hub.id)
            return result
        result = verify.check_journal(Path(config.journal.path), config)[0]
        if result.ok:
            return evidence_result(config) or result
        return result
    except (GatewayError, ValueError, sqlite3.Error) as exc:
        logging.getLogger(__name__).warning("custody chain not verified: %s", exc)
        return None


def evidence_result(config: GatewayConfig) -> Any | None:
    """The evidence check of the journal when it finds an alteration, else None.

    An altered record makes the verdict REJECT ``records_altered`` (analysis.ChainCheck).
    """
    from gateway.evidence.verify import resolve_public_key, verify_evidence

    path = Path(config.journal.path)
    if not path.exists():
        return None
    public, _ = resolve_public_key(None, config.evidence.key_path(config.journal.path))
    found = verify_evidence(path, config.hub.id, public=public)
    return found if found.altered else None


def write_outputs(
    result: TraceResult, out_dir: Path, config: GatewayConfig | None = None
) -> dict[str, Path]:
    """Write PDF, CSV and JSON into out_dir; returns their paths by kind.

    With the config, the PDF carries the report's evidence (report id, software version,
    config fingerprint, covering checkpoint, SHA-256 of the CSV and JSON) and is signed
    with the hub key when the key can be read (gateway.evidence.report).
    """
    from gateway.trace.report_pdf import write_pdf

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"trace-{result.shipment}"
    paths = {
        "pdf": out_dir / f"{stem}.pdf",
        "csv": out_dir / f"{stem}.csv",
        "json": out_dir / f"{stem}.json",
    }
    write_csv(result, paths["csv"])
    write_json(result, paths["json"])
    if config is None:
        write_pdf(result, paths["pdf"])
        return paths
    from gateway.evidence.report import make_manifest, manifest_rows, sign_if_keyed

    manifest = make_manifest(config, result, {k: paths[k] for k in ("csv", "json")})
    write_pdf(result, paths["pdf"], evidence=manifest_rows(manifest))
    sign_if_keyed(config, paths["pdf"], manifest)
    return paths


def summary_table(result: TraceResult) -> Table:
    """The terminal summary: verdict, reasons and the key numbers."""
    from rich.table import Table

    colour = {"accept": "green", "review": "yellow", "reject": "red"}[result.verdict]
    t = Table(title=f"Trace {result.shipment}: [bold {colour}]{result.verdict.upper()}[/]")
    t.add_column("what")
    t.add_column("value")
    p, s, b = result.profile, result.stats, result.budget
    t.add_row("hub", f"{result.hub} (time zone {result.timezone}; times UTC)")
    t.add_row("profile", f"{p.name}: {p.min_c} .. {p.max_c} °C")
    t.add_row(
        "custody",
        f"{iso_utc(result.window_start_ns)} -> {iso_utc(result.window_end_ns)}"
        f"{' (open)' if result.custody_open else ''}, {len(result.spans)} interval(s)",
    )
    if s.min is not None and s.max is not None:
        t.add_row("min", f"{s.min.temp_c:.2f} °C at {iso_utc(s.min.ts_ns)} ({s.min.zone})")
        t.add_row("max", f"{s.max.temp_c:.2f} °C at {iso_utc(s.max.ts_ns)} ({s.max.zone})")
    if s.mkt_c is not None and s.average_c is not None:
        t.add_row("average", f"{s.average_c:.2f} °C")
        t.add_row("MKT", f"{s.mkt_c:.2f} °C (dH {s.dh_kj_per_mol:g} kJ/mol, custody span)")
        if s.mkt_rolling_c is not None:
            t.add_row(
                "MKT, worst window", f"{s.mkt_rolling_c:.2f} °C ({s.mkt_window_s / 3600:g} h)"
            )
    t.add_row(
        "out of range", f"{b.spent_s / 60:.1f} of {b.budget_s / 60:.0f} min budget ({b.state})"
    )
    t.add_row("excursions", str(len(result.excursions)))
    t.add_row("data gaps", str(len(result.gaps)))
    t.add_row("alarms", str(len(result.alarms)))
    t.add_row("chain", result.chain.status.replace("_", " "))
    t.add_row("readings", f"{len(result.points)} in window, {sum(result.in_custody)} in custody")
    for r in result.reasons:
        t.add_row(r.level, r.text)
    return t


def run_trace(args: argparse.Namespace) -> int:
    """Run ``coldchain trace``; see the module docstring for exit codes."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    err = Console(stderr=True)
    out = Console()
    try:
        shipment = validate_id(args.shipment, "shipment id")
        config = load_config(args.config)
        as_of_ns = _as_of(args.as_of)
        source = open_source(args, config)
    except ConfigError as exc:
        err.print(f"coldchain trace: {exc}\n{exc.render()}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    except TraceInputError as exc:
        err.print(f"coldchain trace: {exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    except TraceSourceError as exc:
        err.print(f"coldchain trace: {exc}", markup=False, highlight=False)
        return EXIT_SOURCE
    try:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=args.quiet,
        ) as bar:
            task = bar.add_task(f"querying {args.source} for {shipment}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = build_trace(
                source,
                config,
                shipment,
                as_of_ns=as_of_ns,
                profile=args.profile,
                chain=chain_result(config, args),
                context_s=args.context_minutes * 60,
                progress=progress,
            )
            bar.update(task, description="writing report")
            paths = write_outputs(result, Path(args.out), config)
    except TraceInputError as exc:
        err.print(f"coldchain trace: {exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    except TraceSourceError as exc:
        err.print(f"coldchain trace: {exc}", markup=False, highlight=False)
        return EXIT_SOURCE
    finally:
        if isinstance(source, JournalSource):
            source.close()
    if not args.quiet:
        out.print(summary_table(result))
        for kind, path in paths.items():
            out.print(f"{kind}: {path}", highlight=False)
    return VERDICT_EXIT[result.verdict] if args.verdict_exit else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``coldchain trace`` without the root parser (demo, ``python -m gateway.trace.cli``)."""
    parser = argparse.ArgumentParser(prog="coldchain trace", description=__doc__)
    add_trace_arguments(parser)
    return run_trace(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
