"""The gateway's counters: what came in, what was dropped and why, what went out.

Every drop has a reason label; nothing leaves the gateway uncounted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    """Process-wide counters, read by the status view and written as gateway_health."""

    received: Counter[str] = field(default_factory=Counter)  # by driver
    committed: int = 0  # readings committed to the journal
    dropped: Counter[str] = field(default_factory=Counter)  # by "driver:reason"
    dead_lettered: int = 0
    duplicates: Counter[str] = field(default_factory=Counter)  # redeliveries skipped, by driver
    flagged: Counter[str] = field(default_factory=Counter)  # by quality flag name
    written: Counter[str] = field(default_factory=Counter)  # by sink
    write_failures: Counter[str] = field(default_factory=Counter)  # by sink
    quarantined: Counter[str] = field(default_factory=Counter)  # by sink
    reconnects: Counter[str] = field(default_factory=Counter)  # by component
    connected: dict[str, bool] = field(default_factory=dict)  # by component
    last_error: dict[str, str] = field(default_factory=dict)  # by component

    def drop(self, component: str, reason: str, n: int = 1) -> None:
        """Count n inputs dropped by a component for a reason."""
        self.dropped[f"{component}:{reason}"] += n

    def error(self, component: str, message: str) -> None:
        """Remember a component's most recent error."""
        self.last_error[component] = message

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of every counter."""
        return {
            "received": dict(self.received),
            "committed": self.committed,
            "dropped": dict(self.dropped),
            "dead_lettered": self.dead_lettered,
            "duplicates": dict(self.duplicates),
            "flagged": dict(self.flagged),
            "written": dict(self.written),
            "write_failures": dict(self.write_failures),
            "quarantined": dict(self.quarantined),
            "reconnects": dict(self.reconnects),
            "connected": dict(self.connected),
            "last_error": dict(self.last_error),
        }
