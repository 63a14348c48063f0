"""Pure escalation rules: which policy takes an alert, quiet hours, ack codes.

Kept free of I/O so the rules are tested on their own and the store applies them inside
its transactions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.alerts.store import Alert
from gateway.core.clock import datetime_to_ns, ns_to_datetime
from gateway.notify.config import PolicyConfig, QuietHours

# Crockford-style alphabet without 0/O, 1/I/L, U: readable over the phone.
ACK_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
ACK_CODE_LENGTH = 6


def alert_zone(alert: Alert, sensor_zones: Mapping[str, str], zones: set[str]) -> str | None:
    """The zone an alert is about: its subject if a zone, a sensor's zone, or details.zone."""
    if alert.subject in zones:
        return alert.subject
    if alert.subject in sensor_zones:
        return sensor_zones[alert.subject]
    zone = alert.details.get("zone")
    return zone if isinstance(zone, str) and zone else None


def match_policy(
    policies: Sequence[PolicyConfig], alert: Alert, zone: str | None
) -> PolicyConfig | None:
    """The first policy (file order) whose severities, zones and rules all take the alert."""
    for policy in policies:
        if str(alert.severity) not in policy.severities:
            continue
        if policy.zones and zone not in policy.zones:
            continue
        if policy.rules and alert.rule not in policy.rules:
            continue
        return policy
    return None


def quiet_until(quiet: QuietHours | None, timezone: str, at_ns: int) -> int | None:
    """End of the quiet span containing at_ns (epoch ns), or None outside quiet hours.

    Computed on the hub's wall clock, so a span follows daylight-saving changes.
    """
    if quiet is None:
        return None
    tz = ZoneInfo(timezone)
    local = ns_to_datetime(at_ns).astimezone(tz)
    start, end = quiet.minutes()
    now_min = local.hour * 60 + local.minute
    wraps = start > end
    inside = (start <= now_min or now_min < end) if wraps else (start <= now_min < end)
    if not inside:
        return None
    end_day = local.date()
    if wraps and now_min >= start:
        end_day = end_day + timedelta(days=1)
    end_local = datetime(end_day.year, end_day.month, end_day.day, end // 60, end % 60, tzinfo=tz)
    return datetime_to_ns(end_local)


def ack_code(alert_id: str, attempt: int = 0) -> str:
    """A short code for an alert (attempt > 0 after a collision): 6 readable characters."""
    digest = hashlib.sha256(f"{alert_id}|{attempt}".encode()).digest()
    value = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(ACK_CODE_LENGTH):
        value, index = divmod(value, len(ACK_ALPHABET))
        chars.append(ACK_ALPHABET[index])
    return "".join(chars)


def normalise_code(text: str) -> str:
    """What a person typed, as a code to look up (case, spaces and dashes ignored)."""
    return text.strip().upper().replace("-", "").replace(" ", "")
