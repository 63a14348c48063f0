"""The gateway's exception tree.

::

    GatewayError
    ├── ConfigError            a config file that cannot be loaded or validated
    ├── JournalError           the SQLite journal cannot be opened or written
    │   ├── JournalUnwritable  the disk: full, I/O error, read-only; retry, it is a state
    │   └── JournalRefused     the data: a record SQLite cannot store (poison input)
    ├── DriverError            an input driver cannot do its work
    │   └── DriverDisconnected the device or broker went away; the supervisor retries
    ├── SinkError              an output cannot deliver a batch
    │   ├── SinkUnavailable    transient (network, 5xx, 429): retry later, keep the backlog
    │   └── SinkRejected       the server refused the batch for good (4xx): quarantine it
    └── ServiceError           a helper service (test or demo broker/database) failed to start

Library errors (``OSError``, ``serial.SerialException``, ``aiomqtt.MqttError``,
``urllib3`` errors, ``sqlite3.Error``) are translated at the module boundary with
``raise ... from exc`` so callers only handle these.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A config file that cannot be loaded or does not validate."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = problems or []

    def render(self) -> str:
        """One line per problem: ``field.path: message``."""
        if not self.problems:
            return str(self)
        return "\n".join(f"{path}: {msg}" for path, msg in self.problems)


class JournalError(GatewayError):
    """The journal cannot be opened or written."""


class JournalUnwritable(JournalError):
    """The journal's storage failed (disk full, I/O error, read-only): retry later.

    Nothing about the data is wrong; the same commit succeeds once space returns.
    """


class JournalRefused(JournalError):
    """SQLite refused the records themselves (a value it cannot bind or store).

    Retrying the same records cannot help: the ingest bisects the batch and
    dead-letters the offenders.
    """


class DriverError(GatewayError):
    """An input driver cannot do its work."""


class DriverDisconnected(DriverError):
    """The device or broker went away; the supervisor reconnects with backoff."""


class SinkError(GatewayError):
    """An output cannot deliver a batch."""


class SinkUnavailable(SinkError):
    """Transient failure: keep the backlog and retry with backoff."""


class SinkRejected(SinkError):
    """The server refused the batch for good; retrying the same bytes cannot help."""


class ServiceError(GatewayError):
    """A helper service (private Mosquitto or InfluxDB) failed to start or stop."""
