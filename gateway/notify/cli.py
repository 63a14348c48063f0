"""``coldchain notify test CONTACT`` and the notification record in ``coldchain alerts``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from gateway.alerts.store import Alert
from gateway.config import CONFIG_HELP, DEFAULT_CONFIG, load_config
from gateway.core.errors import ConfigError
from gateway.notify.history import AlarmLog, attempt_text, local_time


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def add_notify_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``coldchain notify``."""
    p.add_argument("action", choices=["test"], help="test: send a test message")
    p.add_argument("contact", help="a contact name from [notify]")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=CONFIG_HELP)


def run_notify(args: argparse.Namespace) -> int:
    """Send a test message on each of the contact's channels and say what happened."""
    from gateway.notify.channels import render, send

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        _err(f"{args.config}: config rejected")
        _err(exc.render())
        return 2
    notify = config.notify
    contact = notify.contact(args.contact) if notify is not None else None
    if notify is None or contact is None:
        known = ", ".join(c.name for c in notify.contacts) if notify else ""
        _err(f"coldchain: no contact {args.contact!r} (known: {known or 'none'})")
        return 2
    now = time.time_ns()
    item = {
        "kind": "test",
        "alert_id": "test",
        "ack_code": None,
        "level": 0,
        "rule": "test",
        "subject": config.hub.id,
        "severity": "info",
        "message": f"test message from hub {config.hub.id} to {contact.name}: no action needed",
        "started_ns": now,
        "raised_ns": now,
        "value": None,
        "limit": None,
    }
    message = render(
        f"{config.hub.id}-test-{now}", config.hub.id, contact.name, [item], config.hub.timezone, now
    )
    failures = 0
    for i, channel in enumerate(contact.channels):
        started = time.monotonic()
        ok, detail = asyncio.run(send(channel, message))
        took = time.monotonic() - started
        failures += not ok
        verdict = "OK    " if ok else "FAILED"
        sys.stdout.write(
            f"{verdict} channels[{i}] {channel.name} {channel.display_url()}"
            f" ({took:.1f} s): {detail}\n"
        )
    return 1 if failures else 0


def record_lines(alert: Alert, log: AlarmLog | None, timezone: str, code: str | None) -> list[str]:
    """The indented record printed under an alert by ``coldchain alerts``."""
    lines: list[str] = []
    if code:
        lines.append(f"    ack code {code}")
    for attempt in log.attempts if log else ():
        lines.append("    " + attempt_text(attempt, timezone))
    if alert.acknowledged_ns is not None:
        note = f': "{log.ack_note}"' if log and log.ack_note else ""
        lines.append(
            f"    acknowledged by {alert.acknowledged_by} at"
            f" {local_time(alert.acknowledged_ns, timezone)}{note}"
        )
    if alert.cleared_ns is not None:
        lines.append(f"    cleared at {local_time(alert.cleared_ns, timezone)}")
    return lines
