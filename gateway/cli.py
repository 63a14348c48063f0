"""The ``coldchain`` command: the gateway daemon and the operator's tools around it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.config import CONFIG_HELP, DEFAULT_CONFIG, GatewayConfig, load_config
from gateway.core.clock import iso_utc
from gateway.core.errors import ConfigError, GatewayError, JournalError
from gateway.core.text import printable, printable_bytes

if TYPE_CHECKING:
    from gateway.journal.store import Journal


def _open_journal(config: GatewayConfig, *, write: bool = False) -> Journal:
    """The daemon's existing journal: never a new, empty one for a mistyped path.

    Read-only commands open it read-only; ``write`` (ack, handoff) opens it for writing,
    but only if the daemon has made it.
    """
    from gateway.journal.store import Journal

    path = Path(config.journal.path)
    if not path.is_file():
        msg = f"no journal at {path} (journal.path): has the daemon run with this config?"
        raise JournalError(msg)
    if write:
        return Journal(path)
    return Journal.open_readonly(path)


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"{args.file}: {len(exc.problems) or 1} problem(s)", file=sys.stderr)
        for path, msg in exc.problems or [("(file)", str(exc))]:
            print(f"  {printable(path)}: {printable(msg)}", file=sys.stderr)
        return 2
    from gateway.config.audit import ip_allow_dropin, security_warnings

    if args.ip_allow:
        print(ip_allow_dropin(config), end="")
        return 0
    print(summary(config, args.file))
    from gateway.config.warnings import config_warnings

    warnings = config_warnings(config)
    for path, message in warnings:
        print(f"  warning: {printable(path)}: {printable(message)}")
    if warnings:
        print(f"  {len(warnings)} warning(s); the config is valid and would run as it is")
    # What would let someone fake or read the record (docs/security.md).
    for warning in security_warnings(config):
        print(f"  security warning: {printable(warning)}")
    return 0


def summary(config: GatewayConfig, path: str) -> str:
    """A short human summary of a valid config."""
    lines = [
        f"{path}: OK",
        f"  hub        {config.hub.id} ({config.hub.timezone})",
        f"  zones      {len(config.zones)}: {', '.join(z.id for z in config.zones)}",
        f"  sensors    {len(config.sensors)}",
        f"  drivers    {_driver_counts(config)}",
        f"  journal    {config.journal.path} (synchronous={config.journal.synchronous})",
    ]
    influx = config.sinks.influx
    if influx is None:
        lines.append("  influx     (none: readings stay in the journal)")
    else:
        target = (
            f"db={influx.database}"
            if influx.api == "v1"
            else f"org={influx.org} bucket={influx.bucket}"
        )
        lines.append(f"  influx     {influx.api} {influx.url} {target}")
    notify = config.notify
    if notify is None or not notify.contacts:
        lines.append("  notify     (none: alerts reach no person; see docs/notifications.md)")
    else:
        channels = sum(len(c.channels) for c in notify.contacts)
        lines.append(
            f"  notify     {len(notify.contacts)} contact(s), {channels} channel(s),"
            f" {len(notify.policies)} polic{'y' if len(notify.policies) == 1 else 'ies'}"
        )
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.runtime.logs import setup_logging
    from gateway.runtime.reload import install_signal_handlers, run_with_reload

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: config rejected", file=sys.stderr)
        print(printable(exc.render()).replace("\\n", "\n"), file=sys.stderr)
        return 2
    setup_logging(config.logging.level, config.logging.format)

    async def main() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        install_signal_handlers(stop, reload)
        await run_with_reload(config, args.config, stop, reload)

    try:
        asyncio.run(main())
    except GatewayError as exc:
        print(f"coldchain: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    path = Path(args.status_file) if args.status_file else None
    if path is None:
        config = load_config(args.config)
        path = Path(config.journal.path).with_name("status.json")
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"no status at {path}: {exc} (is the daemon running?)", file=sys.stderr)
        return 1
    stale = _stale(status, path)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        from gateway.runtime.status_view import render_status

        render_status(status)
    if stale:
        # The last status a dead daemon left: show it, but say so and fail (scripts, monit).
        print(f"STALE: {stale}; this is the last status the daemon wrote", file=sys.stderr)
        return 3
    if status.get("state") == "degraded":
        reasons = "; ".join(status.get("degraded_reasons") or []) or "no reason given"
        print(f"DEGRADED: {reasons}", file=sys.stderr)
        return 1
    return 0


STALE_AFTER_S = 120.0  # a running daemon rewrites status.json every status_interval_s


def _stale(status: dict[str, object], path: Path) -> str | None:
    """Why a status file is not the state of a running daemon (None: it is).

    The age is the file's modification time (wall clock), not the ``at`` inside it,
    which is the daemon's own clock.
    """
    import os
    import time

    pid = status.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"the daemon (pid {pid}) is not running"
        except PermissionError:
            pass  # alive, another user's
    try:
        age = time.time() - path.stat().st_mtime
    except OSError as exc:
        return f"cannot stat {path}: {exc}"
    if age > STALE_AFTER_S:
        return f"written {age:.0f} s ago (more than {STALE_AFTER_S:.0f} s)"
    return None


def _cmd_journal_salvage(args: argparse.Namespace) -> int:
    from gateway.journal.integrity import integrity_problems, salvage

    damaged = Path(args.damaged)
    if not damaged.is_file():
        print(f"no such file: {damaged}", file=sys.stderr)
        return 1
    into = Path(args.into) if args.into else damaged.with_name(damaged.name + ".salvaged.db")
    problems = integrity_problems(damaged)
    print(f"{damaged}: " + ("; ".join(problems[:5]) if problems else "integrity_check ok"))
    report = salvage(damaged, into)
    print("\n".join(report.lines()))
    print(f"into {into}")
    return 0


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    journal = _open_journal(config)
    try:
        for d in journal.dead_letters(args.limit):
            # Payloads and topics come from outside: escape control, bidi and zero-width
            # characters so a line is one line of what was really received.
            cells = (
                str(d.id),
                iso_utc(d.received_ns),
                printable(d.source, 64),
                printable(d.topic, 200),
                printable(d.reason, 64),
                printable(d.detail, 300),
                printable_bytes(d.payload[:480], 160),
            )
            print("\t".join(cells))
    finally:
        journal.close()
    return 0


def _cmd_alerts(args: argparse.Namespace) -> int:
    import time

    from gateway.alerts.store import AlertError, AlertStore
    from gateway.notify.cli import record_lines
    from gateway.notify.history import alarm_logs
    from gateway.notify.store import code_of, resolve_ack_code

    config = load_config(args.config)
    journal = _open_journal(config, write=args.action == "ack")
    store = AlertStore(journal.connection, config.hub.id)
    db = journal.connection
    try:
        alert_id = args.id
        if alert_id and store.get(alert_id) is None:
            # The short code printed in every notification stands for its alert.
            alert_id = resolve_ack_code(db, alert_id) or alert_id
        if args.action == "ack":
            if not alert_id or not args.by:
                print(
                    "usage: coldchain alerts ack ID|CODE --by NAME [--note TEXT]", file=sys.stderr
                )
                return 2
            try:
                alert = store.acknowledge(alert_id, args.by, time.time_ns(), args.note or "")
            except AlertError as exc:
                print(f"coldchain: {printable(exc)}", file=sys.stderr)
                return 1
            print(f"{alert.id} acknowledged by {printable(alert.acknowledged_by or '', 128)}")
            return 0
        if args.action == "show":
            found = store.get(alert_id) if alert_id else None
            if found is None:
                print(f"coldchain: no alert {args.id!r}", file=sys.stderr)
                return 1
            shown = [found]
        else:
            shown = store.active() + (store.recent_cleared(args.recent) if args.recent else [])
        if not shown:
            print("no active alerts")
            return 0
        logs = alarm_logs(db, [a.id for a in shown])
        for a in shown:
            by = f" (ack: {printable(a.acknowledged_by, 128)})" if a.acknowledged_by else ""
            print(
                f"{a.id}\t{a.severity}\t{a.state}{by}\t{printable(a.subject, 128)}\t"
                f"since {iso_utc(a.started_ns)}\t{printable(a.message, 500)}"
            )
            for text in record_lines(a, logs.get(a.id), config.hub.timezone, code_of(db, a.id)):
                print(printable(text))
        return 0
    finally:
        journal.close()


def _cmd_handoff(args: argparse.Namespace) -> int:
    import time

    from gateway.custody.events import CustodyEvent
    from gateway.custody.ledger import CustodyLedger

    config = load_config(args.config)
    body: dict[str, object] = {
        "shipment": args.shipment,
        "event": args.event,
        "zone": args.zone,
        "actor": args.by,
    }
    if args.at:
        body["at"] = args.at
    else:
        body["ts_ns"] = time.time_ns()
    for key in ("carrier", "profile", "note"):
        if getattr(args, key):
            body[key] = getattr(args, key)
    payload = json.dumps(body).encode()
    try:
        CustodyEvent.from_json(payload)  # say what is wrong now, not after the daemon
    except (ValueError, GatewayError) as exc:
        print(f"coldchain: handoff refused: {printable(exc)}", file=sys.stderr)
        return 2
    journal = _open_journal(config, write=True)
    try:
        ledger = CustodyLedger(
            journal.connection,
            config.hub.id,
            {z.id for z in config.zones},
            set(config.all_profiles()),
        )
        inbox_id = ledger.submit_to_inbox(payload, time.time_ns())
        print(f"handoff {inbox_id} queued: {args.shipment} {args.event} in {args.zone}")
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            status = ledger.inbox_status(inbox_id)
            if status is not None and status.processed:
                record = status.record
                if record is not None and not record.accepted:
                    print(
                        f"rejected by the gateway: {record.reason}: {printable(record.detail)}",
                        file=sys.stderr,
                    )
                    return 1
                print("accepted by the gateway")
                return 0
            time.sleep(0.2)
        if args.wait:
            print("not applied yet (is the daemon running?); it stays queued", file=sys.stderr)
            return 3
        return 0
    finally:
        journal.close()


def _add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``coldchain demo``."""
    p.add_argument("--duration", type=float, default=45.0, help="seconds to run (default 45)")
    p.add_argument(
        "--services",
        choices=["auto", "private", "external", "none"],
        default="auto",
        help="auto: use running services on loopback, else start private ones if installed",
    )
    p.add_argument("--out", default="coldchain-demo", help="folder for the journal and config")
    p.add_argument("--interval", type=float, default=1.0, help="sensor reporting interval, s")
    p.add_argument("--no-live", action="store_true", help="plain log lines, no live table")


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.apps.demo.run import run_demo

    return run_demo(args)


class _RootHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The root help: the command list is the epilog's table (one line each, unwrapped)."""

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):
            return ""
        return super()._format_action(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="coldchain",
        description="Cold-chain hub gateway: the daemon and the operator's tools around it.",
        formatter_class=_RootHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"coldchain {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of the commands below"
    )

    p = sub.add_parser("run", help="run the gateway daemon")
    p.add_argument(
        "--config", "-c", required=True, help=f"the gateway config (TOML), e.g. {DEFAULT_CONFIG}"
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check-config", help="validate a config file and list every problem")
    p.add_argument("file", help="the config file to check (TOML)")
    p.add_argument(
        "--ip-allow",
        action="store_true",
        help="print the systemd drop-in that limits the unit to the config's peers",
    )
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser(
        "status",
        help="per-zone temperatures, limits and states, sensors last seen, pipeline counters",
        description="The running daemon's view of the hub (its status.json).",
        epilog="exit codes: 0 running and online; 1 degraded (a driver or sink down, the"
        " journal unwritable) or no status file; 2 config error; 3 stale: the daemon is not"
        " running or stopped writing its status",
    )
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=CONFIG_HELP)
    p.add_argument("--status-file", help="read this status.json instead of the config's")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("journal", help="journal maintenance: salvage a damaged journal")
    journal_sub = p.add_subparsers(dest="journal_command", required=True, help="what to do")
    q = journal_sub.add_parser(
        "salvage", help="copy what is readable from a damaged journal, with a report"
    )
    q.add_argument("damaged", help="the damaged file (journal.db.damaged-<time>)")
    q.add_argument("--into", help="journal to copy into (default: <damaged>.salvaged.db)")
    q.set_defaults(func=_cmd_journal_salvage)

    p = sub.add_parser("dead-letters", help="list journaled inputs that could not be read")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=CONFIG_HELP)
    p.add_argument("--limit", type=int, default=50, help="at most this many, newest first")
    p.set_defaults(func=_cmd_dead_letters)

    p = sub.add_parser(
        "alerts", help="active alerts with who was notified, or acknowledge one (id or code)"
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "ack", "show"],
        default="list",
        help="list (default): active alerts; show ID: one alert; ack ID --by NAME",
    )
    p.add_argument("id", nargs="?", help="alert id or the ack code from a notification")
    p.add_argument("--recent", type=int, default=0, help="also list the last N cleared alerts")
    p.add_argument("--by", help="who acknowledges (for ack)")
    p.add_argument("--note", help="why (for ack)")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=CONFIG_HELP)
    p.set_defaults(func=_cmd_alerts)

    from gateway.notify.cli import add_notify_arguments, run_notify

    p = sub.add_parser("notify", help="send a test message to a contact and say what happened")
    add_notify_arguments(p)
    p.set_defaults(func=run_notify)

    p = sub.add_parser("handoff", help="record a custody event (queued for the daemon)")
    p.add_argument("shipment", help="shipment id")
    p.add_argument(
        "event",
        choices=[
            "received",
            "put_away",
            "picked",
            "packed",
            "staged",
            "handed_to_carrier",
            "returned",
        ],
        help="what happened to the shipment",
    )
    p.add_argument("--zone", required=True, help="the zone where it happened (a zone id)")
    p.add_argument("--by", required=True, help="who handled it")
    p.add_argument("--carrier", help="carrier name (for handed_to_carrier)")
    p.add_argument("--profile", help="product profile (first event of a shipment)")
    p.add_argument("--note", help="free text kept with the event")
    p.add_argument("--at", help="ISO 8601 time with offset; default now")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the daemon")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=CONFIG_HELP)
    p.set_defaults(func=_cmd_handoff)

    from gateway.commands.cli import KEYS_ACTIONS
    from gateway.evidence.cli import EXTRA_ACTIONS, add_keys_arguments, run_keys

    EXTRA_ACTIONS.update(KEYS_ACTIONS)  # device keys join the one `keys` command

    p = sub.add_parser("keys", help="the hub key (init, show); keys that sign commands")
    add_keys_arguments(p)
    p.set_defaults(func=run_keys)

    from gateway.evidence.cli import add_verify_report_arguments, run_verify_report

    p = sub.add_parser("verify-report", help="check a signed claim report and its CSV/JSON")
    add_verify_report_arguments(p)
    p.set_defaults(func=run_verify_report)

    from gateway.apps.verify_cli import add_verify_arguments, run_verify

    p = sub.add_parser("verify", help="check the custody hash chain in the journal and InfluxDB")
    add_verify_arguments(p)
    p.set_defaults(func=run_verify)

    from gateway.trace.cli import add_trace_arguments, run_trace

    p = sub.add_parser("trace", help="claim report of one shipment: PDF, CSV, JSON")
    add_trace_arguments(p)
    p.set_defaults(func=run_trace)

    p = sub.add_parser("demo", help="run a simulated hub end to end with a live view")
    _add_demo_arguments(p)
    p.set_defaults(func=_cmd_demo)

    from gateway.apps.discover import add_parser as add_discover_parser

    add_discover_parser(sub)

    from firmware_sim.cli import add_parser as add_sim_parser

    add_sim_parser(sub)
    parser.epilog = _root_epilog(sub)
    return parser


_EXIT_CODES = f"""\
exit codes (each command's --help says more):
  0    done / everything checked is fine
  1    a problem found or the operation failed (daemon down or degraded, alert
       not found, tampering, journal missing)
  2    usage or config error (nothing was done)
  3    a source could not be read, or a handoff is still queued
  130  interrupted (Ctrl-C)

examples:
  coldchain check-config {DEFAULT_CONFIG}
  coldchain status                      # zones now; exit 1 degraded, 3 daemon down
  coldchain alerts ack excursion-3f2a9c0d1e4b5a67 --by ana --note "door closed"
  coldchain demo                        # a simulated hub end to end, nothing to install"""


def _root_epilog(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> str:
    """Every command with its one-line purpose (from its own help: one copy), then exits."""
    rows = [(action.dest, action.help or "") for action in sub._choices_actions]
    width = max(len(name) for name, _ in rows)
    lines = ["commands:", *(f"  {name:<{width}}  {text}" for name, text in rows)]
    return "\n".join([*lines, "", _EXIT_CODES])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the coldchain console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sim":
        from firmware_sim.cli import run as run_sim

        return run_sim(args)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"coldchain: config rejected: {exc}", file=sys.stderr)
        if exc.problems:
            print(exc.render(), file=sys.stderr)
        return 2
    except (GatewayError, OSError) as exc:
        # A user's or the machine's problem (journal missing, permission): say it, no trace.
        print(f"coldchain {args.command}: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        # A journal another version wrote, or one that is locked: name it, no trace.
        print(f"coldchain {args.command}: journal: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())


def _driver_counts(config: GatewayConfig) -> str:
    counts = Counter(kind for kind, _, _ in config.drivers.blocks())
    return ", ".join(f"{kind} x{n}" for kind, n in counts.items()) or "none"
