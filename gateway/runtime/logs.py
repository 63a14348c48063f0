"""Structured logging: one JSON object per line for journald and log shippers, or text."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON with its extra fields (component, sink, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines with the component in brackets."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(component_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        component = getattr(record, "component", None)
        record.component_tag = f" [{component}]" if component else ""
        return super().format(record)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for the process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # paho and urllib3 are chatty at INFO/DEBUG about things we count ourselves.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("mqtt").setLevel(logging.WARNING)
