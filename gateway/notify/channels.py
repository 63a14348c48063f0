"""Rendering a group of outbox rows into one message, and sending it on a channel.

Two kinds of channel:

- **apprise**: any Apprise URL (mailto/mailtos, ntfy, Slack, Teams, Telegram, Pushover,
  Signal, SMS gateways, json://...). Apprise is imported on the first send.
- **webhook**: a plain HTTP(S) POST of the JSON in
  ``docs/schemas/notification-webhook.schema.json``, for a WMS or ticketing system, with
  ``Idempotency-Key: <message id>`` so a re-sent message can be recognised.

Secrets are filled into the URL and headers just before the request and removed from
every error text and from Apprise's own log records (:class:`RedactSecrets`), so neither
logs, the status file nor the record carry them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.core.clock import iso_utc, ns_to_datetime
from gateway.notify.config import ChannelConfig, fill
from gateway.sinks.planner.payloads import PAYLOAD_SCHEMA_VERSION

WEBHOOK_SCHEMA: Final = "notification-webhook.schema.json"
# Apprise services that take +Header=value in the URL (custom headers).
_HEADER_SCHEMES: Final = frozenset({"mailto", "mailtos", "json", "jsons", "form", "forms"})
_VERBS: Final = {
    "raised": "ALERT",
    "escalated": "ESCALATED",
    "repeat": "STILL UNACKNOWLEDGED",
    "acknowledged": "ACKNOWLEDGED",
    "cleared": "ALL CLEAR",
    "test": "TEST",
}


@dataclass(frozen=True, slots=True)
class Message:
    """One message as it leaves: a title and text body, and the webhook's JSON."""

    id: str
    title: str
    body: str
    payload: dict[str, Any]
    severity: str


class RedactSecrets(logging.Filter):
    """Replaces known secret values in log records (installed on Apprise's logger)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, values: Sequence[str]) -> None:
        """Remember secrets to hide (only non-trivial ones: a 1-char secret is no secret)."""
        self._secrets.update(v for v in values if len(v) >= 3)

    def redact(self, text: str) -> str:
        """The text with every known secret (and its URL-quoted form) replaced by ***."""
        from urllib.parse import quote

        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        if self._secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
        return True


REDACT = RedactSecrets()


def _apprise_logger_guard() -> None:
    # addFilter ignores a filter that is already installed.
    logging.getLogger("apprise").addFilter(REDACT)


def _local(ns: int, timezone: str) -> str:
    return ns_to_datetime(ns).astimezone(ZoneInfo(timezone)).strftime("%H:%M %Z, %d %b")


def _line(item: dict[str, Any], timezone: str, ack_url: str | None) -> list[str]:
    kind = str(item.get("kind", "raised"))
    verb = _VERBS.get(kind, kind.upper())
    sev = str(item.get("severity", "")).upper()
    head = f"{verb} [{sev}] {item.get('rule')} on {item.get('subject')}"
    if item.get("level") and kind in {"raised", "escalated", "repeat"}:
        head += f" (level {item['level']})"
    lines = [head, f"  {item.get('message') or ''}".rstrip()]
    lines.append(f"  since {_local(int(item['started_ns']), timezone)}")
    if kind == "acknowledged":
        note = f': "{item["note"]}"' if item.get("note") else ""
        at = item.get("at_ns") or item.get("acknowledged_ns")
        when = f" at {_local(int(at), timezone)}" if at else ""
        lines.append(f"  taken by {item.get('by') or item.get('acknowledged_by')}{when}{note}")
    elif kind == "cleared":
        at = item.get("at_ns") or item.get("cleared_ns")
        if at:
            lines.append(f"  cleared at {_local(int(at), timezone)}")
    else:
        code = item.get("ack_code")
        if code:
            lines.append(f"  acknowledge: coldchain alerts ack {code} --by NAME --note '...'")
            if ack_url:
                lines.append(f"  or open {ack_url.replace('{code}', str(code))}")
    lines.append(f"  alert id {item.get('alert_id')}")
    return lines


def render(
    message_id: str,
    hub: str,
    contact: str,
    items: Sequence[dict[str, Any]],
    timezone: str,
    now_ns: int,
    ack_url: str | None = None,
) -> Message:
    """Title, body and webhook payload for items going to one contact in one message."""
    severities = [str(i.get("severity", "info")) for i in items]
    worst = max(severities, key=lambda s: {"info": 0, "warning": 1, "critical": 2}.get(s, 0))
    if len(items) == 1:
        item = items[0]
        kind = str(item.get("kind", "raised"))
        title = (
            f"[{hub}] {_VERBS.get(kind, kind.upper())} {worst.upper()}: "
            f"{item.get('message') or item.get('rule')}"
        )
    else:
        kinds = sorted({str(i.get("kind")) for i in items})
        title = f"[{hub}] {len(items)} alert notices ({', '.join(kinds)}), worst {worst}"
    body_lines: list[str] = []
    for item in items:
        body_lines.extend(_line(item, timezone, ack_url))
        body_lines.append("")
    body_lines.append(f"hub {hub}, message {message_id}")
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA_VERSION,
        "type": "notification",
        "id": message_id,
        "hub": hub,
        "contact": contact,
        "sent_at": iso_utc(now_ns),
        "items": [_payload_item(i) for i in items],
    }
    return Message(message_id, title[:200], "\n".join(body_lines), payload, worst)


def _iso(ns: Any) -> str | None:
    return None if ns is None else iso_utc(int(ns))


def _payload_item(item: dict[str, Any]) -> dict[str, Any]:
    kind = str(item.get("kind", "raised"))
    out: dict[str, Any] = {
        "kind": kind,
        "alert_id": item.get("alert_id"),
        "ack_code": item.get("ack_code"),
        "level": int(item.get("level") or 0),
        "rule": item.get("rule"),
        "subject": item.get("subject"),
        "severity": item.get("severity"),
        "message": item.get("message") or "",
        "started_at": _iso(item.get("started_ns")),
        "raised_at": _iso(item.get("raised_ns")),
        "value": item.get("value"),
        "limit": item.get("limit"),
    }
    if kind == "acknowledged":
        out["acknowledged_by"] = item.get("by") or item.get("acknowledged_by")
        out["acknowledged_at"] = _iso(item.get("at_ns") or item.get("acknowledged_ns"))
        out["note"] = item.get("note") or ""
    if kind == "cleared":
        out["cleared_at"] = _iso(item.get("at_ns") or item.get("cleared_ns"))
    return out


def resolve_secrets(channel: ChannelConfig) -> dict[str, str]:
    """The channel's secrets, read now (ConfigError when one is missing)."""
    values = {name: ref.resolve() for name, ref in channel.secrets.items()}
    REDACT.add(list(values.values()))
    return values


def _with_header(url: str, name: str, value: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _HEADER_SCHEMES:
        return url
    parts = urlsplit(url)
    query = f"{parts.query}&+{name}={value}" if parts.query else f"+{name}={value}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


async def send(channel: ChannelConfig, message: Message) -> tuple[bool, str]:
    """Send one message on one channel: (delivered, what happened, secrets redacted)."""
    try:
        secrets = resolve_secrets(channel)
    except Exception as exc:  # ConfigError: a missing env var or credential file
        return False, f"secret unavailable: {exc}"
    try:
        if channel.kind == "webhook":
            ok, detail = await asyncio.to_thread(_post_webhook, channel, secrets, message)
        else:
            ok, detail = await _send_apprise(channel, secrets, message)
    except Exception as exc:  # a channel must never take the notifier down
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return ok, REDACT.redact(detail)


async def _send_apprise(
    channel: ChannelConfig, secrets: dict[str, str], message: Message
) -> tuple[bool, str]:
    import apprise

    _apprise_logger_guard()
    url = _with_header(fill(channel.url, secrets), "X-Coldchain-Message-Id", message.id)
    client = apprise.Apprise()
    if not client.add(url):
        return False, f"Apprise refused the URL {channel.display_url()}"
    notify_type = {
        "critical": apprise.NotifyType.FAILURE,
        "warning": apprise.NotifyType.WARNING,
    }.get(message.severity, apprise.NotifyType.INFO)
    result = await client.async_notify(
        body=message.body,
        title=message.title,
        notify_type=notify_type,
        body_format=apprise.NotifyFormat.TEXT,
        timeout=channel.timeout_s,
        log_level=logging.DEBUG,
    )
    if bool(result):
        return True, f"accepted by {channel.name}"
    entries = [str(getattr(e, "message", e)) for e in result.logs()]
    detail = "; ".join(entries[-3:])
    return False, f"{result.status.name.lower()}: {detail or 'no detail from Apprise'}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx comes back as an error: a redirect must not carry the webhook's headers
    (its secret) to another listener, nor turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def _post_webhook(
    channel: ChannelConfig, secrets: dict[str, str], message: Message
) -> tuple[bool, str]:
    body = json.dumps(message.payload, allow_nan=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"coldchain-gateway/{__version__}",
        "Idempotency-Key": message.id,
    }
    headers.update({k: fill(v, secrets) for k, v in channel.headers.items()})
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked at config load)
        fill(channel.url, secrets), data=body, headers=headers, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=channel.timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            return False, f"HTTP {exc.code}: redirects are not followed (fix the webhook url)"
        return False, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"webhook unreachable: {reason}"
    if 200 <= status < 300:
        return True, f"HTTP {status}"
    return False, f"HTTP {status}"
