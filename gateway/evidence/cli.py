"""``coldchain keys`` (the hub key) and the evidence part of ``coldchain verify``.

    coldchain keys init [--config FILE]     # make the hub key (private 0600, public .pub)
    coldchain keys show [--config FILE]     # print the public key and its fingerprint

``keys`` is the one command group for keys: device keys that sign commands (issue 11:
``enroll``, ``list``, ``revoke``, ``generate``) join it through :data:`EXTRA_ACTIONS`,
sharing ``gateway.core.keys``. Exit codes: 0 done, 1 refused (the message says why),
2 config error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import CONFIG_HELP, DEFAULT_CONFIG, GatewayConfig, load_config
from gateway.core.errors import ConfigError

KeysAction = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
EXTRA_ACTIONS: dict[str, tuple[str, KeysAction]] = {}
"""More ``coldchain keys`` actions: name -> (help, (add arguments, run))."""


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``keys`` subcommands."""
    parser.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=CONFIG_HELP)
    actions = parser.add_subparsers(dest="keys_action", required=True, help="what to do")
    made = [
        actions.add_parser(
            "init", help="make the hub's Ed25519 key (signs checkpoints and claim reports)"
        ),
        actions.add_parser("show", help="print the hub's public key and fingerprint"),
    ]
    for name, (help_text, (add, _)) in EXTRA_ACTIONS.items():
        made.append(actions.add_parser(name, help=help_text))
        add(made[-1])
    for action in made:  # `coldchain keys init --config F` as well as `keys --config F init`
        action.add_argument(
            "--config",
            "-c",
            default=argparse.SUPPRESS,
            help=CONFIG_HELP % {"default": DEFAULT_CONFIG},
        )


def _config(path: str) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: config rejected: {exc}", file=sys.stderr)
        for where, msg in exc.problems:
            print(f"  {where}: {msg}", file=sys.stderr)
        return None


def run_keys(args: argparse.Namespace) -> int:
    """Run one ``coldchain keys`` action."""
    extra = EXTRA_ACTIONS.get(args.keys_action)
    if extra is not None:
        return extra[1][1](args)
    config = _config(args.config)
    if config is None:
        return 2
    from gateway.core.keys import (
        KeyError_,
        fingerprint,
        generate_private_key,
        load_private_key,
        public_b64,
        public_pem,
        public_raw,
    )

    path = config.evidence.key_path(config.journal.path)
    try:
        if args.keys_action == "init":
            private = generate_private_key(path)
            pub_path = path.with_suffix(".pub")
            pub_path.write_text(public_pem(private.public_key()), encoding="utf-8")
            print(f"hub key written to {path} (mode 0600; give it to the service user only)")
            print(f"public key written to {pub_path}")
        else:
            private = load_private_key(path)
    except (KeyError_, OSError) as exc:
        print(f"coldchain keys: {exc}", file=sys.stderr)
        return 1
    public = private.public_key()
    print(f"hub {config.hub.id} public key (Ed25519, base64): {public_b64(public)}")
    print(f"fingerprint: {fingerprint(public_raw(public))}")
    print("publish it: the daemon also sends it retained to <planner prefix>evidence/key")
    return 0


def add_evidence_verify_arguments(p: argparse.ArgumentParser) -> None:
    """Options ``coldchain verify`` gains for the evidence chain."""
    p.add_argument(
        "--public-key",
        default=None,
        help="the hub's published public key (base64, PEM, or a file); default: hub-key.pub"
        " next to the key file, else the key file itself",
    )
    p.add_argument(
        "--checkpoints",
        action="append",
        default=[],
        type=Path,
        help="a saved planner export holding evidence checkpoints (JSON lines, a JSON"
        " array, or mosquitto_sub -v output); repeatable",
    )
    p.add_argument(
        "--require-signed",
        action="store_true",
        help="exit 4 when the chain is intact but no signed checkpoint could be checked",
    )


class EvidenceRows:
    """The evidence part of ``coldchain verify``, ready for its table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.lines: list[str] = []
        self.unreadable: list[str] = []
        self.ok = True
        self.unanchored = False


def evidence_rows(config: GatewayConfig, args: argparse.Namespace, source: str) -> EvidenceRows:
    """Run the evidence checks for ``coldchain verify`` (journal chain + checkpoints)."""
    from gateway.core.errors import GatewayError
    from gateway.core.keys import KeyError_
    from gateway.evidence.verify import resolve_public_key, verify_evidence
    from gateway.influxql.client import InfluxQLClient

    out = EvidenceRows()
    journal_path = Path(config.journal.path)
    if not journal_path.exists():
        return out
    try:
        public, key_source = resolve_public_key(
            getattr(args, "public_key", None), config.evidence.key_path(config.journal.path)
        )
    except (KeyError_, OSError) as exc:
        out.unreadable.append(f"hub public key: {exc}")
        public, key_source = None, "none"
    influx = None
    if source in ("influx", "both") and config.sinks.influx is not None:
        influx = InfluxQLClient.from_config(config.sinks.influx)
    try:
        result = verify_evidence(
            journal_path,
            config.hub.id,
            public=public,
            influx=influx,
            exports=list(getattr(args, "checkpoints", []) or []),
        )
    except GatewayError as exc:
        out.unreadable.append(f"evidence: {exc}")
        return out
    out.unreadable += result.unreadable
    chain = result.chain
    if not chain.present:
        out.lines.append("evidence: this journal has no evidence chain (made before it existed)")
        out.unanchored = True
        return out
    rows = sum(chain.rows_checked.values())
    ok = "[green]OK[/green]"
    bad = "[bold red]TAMPERED[/bold red]"
    found = chain.finding
    out.rows.append(
        (
            "evidence chain",
            f"{chain.entries} entries, {rows} rows",
            ok if found is None else bad,
            "" if found is None else found.record,
            "" if found is None else found.reason,
        )
    )
    for report in result.checkpoints:
        f = report.finding
        out.rows.append(
            (
                report.source,
                str(report.checked),
                (ok if report.checked else "[yellow]NOT CHECKED[/yellow]") if f is None else bad,
                "" if f is None else f.record,
                "" if f is None else f.reason,
            )
        )
    first = result.finding
    out.ok = first is None
    removed = sum(chain.removed.values())
    unsealed = sum(chain.unsealed.values())
    out.lines.append(
        f"evidence: {'OK' if first is None else 'FAILED'}, chain entry {chain.seq}, head"
        f" {chain.head[:16]}, {rows} rows match their seals"
        + (f", {removed} removed by recorded retention/budget runs" if removed else "")
        + (f", {unsealed} written after the last seal (not yet covered)" if unsealed else "")
    )
    if first is not None:
        out.lines.append(f"first record that does not match: {first.describe()}")
    if public is None:
        out.lines.append(
            "evidence: NOT ANCHORED: no hub public key (give --public-key, or run"
            " `coldchain keys init` on the hub); signatures were not checked"
        )
        out.unanchored = True
    else:
        out.lines.append(f"hub key {result.key_fingerprint} (from {key_source})")
        if not result.anchored and first is None:
            out.lines.append("evidence: NOT ANCHORED: no signed checkpoint matched the chain")
            out.unanchored = True
    return out


def add_verify_report_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``coldchain verify-report``."""
    p.add_argument("file", type=Path, help="the signed claim report (PDF)")
    p.add_argument("--csv", type=Path, default=None, help="its CSV (default: same name, .csv)")
    p.add_argument("--json", type=Path, default=None, help="its JSON (default: same name, .json)")
    p.add_argument(
        "--public-key",
        default=None,
        help="the hub's published public key (base64, PEM, or a file); without it the"
        " signer's key is only reported",
    )
    p.add_argument(
        "--config",
        default=None,
        help="the hub's config: also check the covering checkpoint against its journal",
    )


def run_verify_report(args: argparse.Namespace) -> int:
    """``coldchain verify-report``: 0 genuine, 1 altered or not signed by the hub, 2 usage,
    3 a file could not be read."""
    from gateway.core.keys import KeyError_, fingerprint, parse_public_key, public_raw
    from gateway.evidence.report_sign import check_report

    pdf: Path = args.file
    if not pdf.is_file():
        print(f"coldchain verify-report: {pdf} does not exist", file=sys.stderr)
        return 3
    public = None
    config = None
    try:
        if args.public_key:
            text = args.public_key
            if Path(text).is_file():
                text = Path(text).read_text(encoding="utf-8")
            public = parse_public_key(text)
        if args.config:
            config = _config(args.config)
            if config is None:
                return 2
            if public is None:
                from gateway.evidence.verify import resolve_public_key

                public, _ = resolve_public_key(None, config.evidence.key_path(config.journal.path))
    except (KeyError_, OSError) as exc:
        print(f"coldchain verify-report: {exc}", file=sys.stderr)
        return 2
    files = {
        "csv": args.csv or pdf.with_suffix(".csv"),
        "json": args.json or pdf.with_suffix(".json"),
    }
    result = check_report(pdf, public, files)
    if config is not None and result.manifest is not None:
        _against_journal(config, result)
    manifest = result.manifest or {}
    print(f"report {manifest.get('report_id', '?')} (shipment {manifest.get('shipment', '?')})")
    print(f"signature: {result.pyhanko_summary or 'none'}, signer key {result.signer_key or '-'}")
    if public is not None:
        print(f"hub key: {fingerprint(public_raw(public))}")
    for note in result.notes:
        print(f"  {note}")
    for problem in result.problems:
        print(f"  FAILED: {problem}")
    print("verify-report: OK" if result.ok else "verify-report: FAILED")
    return 0 if result.ok else 1


def _against_journal(config: GatewayConfig, result: Any) -> None:
    """The covering checkpoint's head must be in the hub's intact chain."""
    from gateway.core.errors import GatewayError
    from gateway.evidence import checkpoint as cp
    from gateway.evidence.verify import verify_evidence

    point = (result.manifest or {}).get("checkpoint")
    if point is None:
        return
    try:
        found = verify_evidence(Path(config.journal.path), config.hub.id, public=None)
    except GatewayError as exc:
        result.notes.append(f"journal not checked: {exc}")
        return
    checkpoint = cp.from_json(point)
    if found.chain.finding is not None:
        result.problems.append(f"the hub's journal is altered: {found.chain.finding.describe()}")
    elif found.chain.heads.get(checkpoint.seq) != checkpoint.head:
        result.problems.append(
            f"the hub's chain has another head at entry {checkpoint.seq} than the report's"
            " checkpoint"
        )
    else:
        result.notes.append(
            f"the covering checkpoint (chain entry {checkpoint.seq}) matches the hub's journal"
        )
