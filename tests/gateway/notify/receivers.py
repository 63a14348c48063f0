"""Real receivers for notification tests: aiosmtpd's SMTP server and an HTTP server.

Both run in the test process on loopback ports. The SMTP server can be stopped and
started again on the same port (an outage); every accepted message is kept with the
time of the test clock at acceptance, so tests assert on simulated time.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.apps.localservices import free_port


@dataclass(frozen=True)
class Mail:
    """One message the SMTP server accepted."""

    to: tuple[str, ...]
    subject: str
    body: str
    headers: dict[str, str]
    at_ns: int


class SmtpReceiver:
    """aiosmtpd Controller (its own thread and loop) that records every message."""

    def __init__(self, now_ns: Callable[[], int]) -> None:
        self.port = free_port()
        self.mails: list[Mail] = []
        self._now_ns = now_ns
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd handler hook: parse and keep the message."""
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        mail = Mail(
            to=tuple(str(r) for r in envelope.rcpt_tos),
            subject=str(msg["Subject"]),
            body=str(body),
            headers={k: str(v) for k, v in msg.items()},
            at_ns=self._now_ns(),
        )
        with self._lock:
            self.mails.append(mail)
        return "250 Message accepted for delivery"

    def start(self) -> None:
        """Listen (again) on the same port."""
        # A loaded CI machine may take a while to start the server thread.
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=60)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening: clients get connection refused."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[Mail]:
        """Messages accepted for one recipient, in order."""
        with self._lock:
            return [m for m in self.mails if address in m.to]

    def url(self, to: str) -> str:
        """An Apprise mailto:// URL for this server (plain SMTP on loopback)."""
        return f"mailto://127.0.0.1:{self.port}?from=gateway@hub.example&to={to}&mode=insecure"


@dataclass(frozen=True)
class Hook:
    """One webhook request received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at_ns: int


class HttpReceiver:
    """A ThreadingHTTPServer that records JSON POSTs and answers with a settable status."""

    def __init__(self, now_ns: Callable[[], int]) -> None:
        self.hooks: list[Hook] = []
        self.status = 200
        self.location: str | None = None  # sent as Location (with a 3xx status)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = json.loads(self.rfile.read(length) or b"{}")
                status = receiver.status
                if status < 300:
                    receiver.hooks.append(
                        Hook(self.path, dict(self.headers.items()), data, now_ns())
                    )
                self.send_response(status)
                if receiver.location is not None:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        """The receiver's URL."""
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
