"""The journal cannot be written (disk full, I/O error): a state of the hub, not a crash.

Whoever fails to write the journal (the ingest's commit, a sink's cursor save, the
status snapshot, the disk budget, the SOP engine's alert transitions) reports it here
and carries on with backoff. While the journal is unwritable:

- the ingest stops committing, so nothing is acknowledged and its bounded queue stops
  the drivers reading (the MQTT broker keeps the session's messages; a serial line
  waits in the kernel's buffer);
- the gateway's critical ``journal_unwritable`` alert is raised through every channel
  that does not need the disk: the log, sd_notify ``STATUS``, the planner feed (retained
  ``alerts/{id}`` and a degraded ``status``) and InfluxDB (an ``alert`` point written
  directly, not through the journal's outbox). Listeners (``on_change``) do the sending;
- a probe (``probe``, a one-row write) is retried until it succeeds; then the state
  clears by itself, and the alert's raise and clear are journaled like any other alert
  (the durable record follows once there is a disk to keep it on).

This module only keeps the state (the journal layer knows no alerts); the daemon turns
it into the alert and sends it (gateway/runtime/journal_alert.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

RULE: Final = "journal_unwritable"


@dataclass(frozen=True, slots=True)
class Unwritable:
    """Since when the journal cannot be written, who found out first, and why."""

    since_ns: int
    component: str
    error: str
    cleared_ns: int | None = None


Listener = Callable[[Unwritable], None]


class JournalHealth:
    """Whether the journal can be written; listeners hear when that changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.state: Unwritable | None = None  # set while unwritable
        self.failures = 0
        self.failures_in_a_row = 0  # since the last successful write
        self._listeners: list[Listener] = []

    @property
    def writable(self) -> bool:
        """False from the first failed write until a write succeeds again."""
        return self.state is None

    def on_change(self, listener: Listener) -> None:
        """Call listener when the journal becomes unwritable and when it recovers."""
        self._listeners.append(listener)

    def failed(self, component: str, exc: BaseException, now_ns: int) -> None:
        """A write to the journal failed for a storage reason (not the data's)."""
        self.failures += 1
        self.failures_in_a_row += 1
        if self.state is not None:
            return
        self.state = Unwritable(now_ns, component, str(exc)[:300])
        log.critical(
            "journal %s cannot be written (%s: %s): not acknowledging or reading until it"
            " can; nothing acknowledged is lost",
            self.path,
            component,
            exc,
        )
        self._tell(self.state)

    def recovered(self, now_ns: int) -> None:
        """A write succeeded: the state clears."""
        self.failures_in_a_row = 0
        state = self.state
        if state is None:
            return
        self.state = None
        log.warning(
            "journal %s writable again after %.1f s; recording resumes",
            self.path,
            (now_ns - state.since_ns) / 1e9,
        )
        self._tell(Unwritable(state.since_ns, state.component, state.error, cleared_ns=now_ns))

    def _tell(self, state: Unwritable) -> None:
        for listener in self._listeners:
            try:
                listener(state)
            except Exception:
                log.exception("journal health listener failed")
