"""Signed commands: who really sent a ``cmd/custody`` or ``cmd/ack``, checked before it runs.

The broker's ACL says which *account* may publish on a command topic; a signature says
which *device* wrote the command, survives a leaked broker password, and is kept with the
record. A signed command is an envelope (docs/schemas/signed-command.schema.json)::

    {"key": "scanner-07", "nonce": "5f0c9a2e61d24b0e", "issued_ms": 1767258000000,
     "command": "{\\"shipment\\":\\"SH-1\\",\\"event\\":\\"received\\", ...}",
     "sig": "<base64 Ed25519 signature>"}

``command`` is the command's JSON *as text*, so nobody has to agree on a canonical JSON
form: the signature covers exactly these bytes (:func:`signing_input`)::

    coldchain-command-v1 LF hub LF command name LF key LF nonce LF issued_ms LF command

Binding the hub and the command name means a signed custody event for one hub cannot be
replayed at another hub or as another command. :class:`CommandGuard` refuses, each with a
reason code that goes back on the ``events`` topic:

``unsigned``       no envelope while ``commands.require_signatures`` is on
``malformed``      an envelope with missing or mistyped fields
``unknown_key``    no key of that name is enrolled (``coldchain keys enroll``)
``revoked_key``    the key was revoked
``not_allowed``    the key is not enrolled for this command (``--role custody|ack``)
``bad_signature``  the signature does not verify: altered, or signed by another key
``future_dated``   issued more than ``max_future_s`` after the hub's clock
``expired``        issued more than ``max_age_s`` before it (nonces are kept that long)
``replayed``       this key already used this nonce: a copy of an accepted command

A command with a valid envelope is accepted whether or not signatures are required; an
invalid one is always refused (a bad signature is never "just unsigned").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from gateway.commands.keyring import KeyRing
from gateway.core.clock import NS_PER_S
from gateway.core.errors import GatewayError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNING_CONTEXT: Final = b"coldchain-command-v1"
NONCE_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_COMMAND_CHARS: Final = 8192
ENVELOPE_FIELDS: Final = frozenset({"key", "nonce", "issued_ms", "command", "sig"})

RefusalCode = Literal[
    "unsigned",
    "malformed",
    "unknown_key",
    "revoked_key",
    "not_allowed",
    "bad_signature",
    "future_dated",
    "expired",
    "replayed",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS command_nonces (
    key TEXT NOT NULL,
    nonce TEXT NOT NULL,
    issued_ns INTEGER NOT NULL,
    seen_ns INTEGER NOT NULL,
    command TEXT NOT NULL,
    PRIMARY KEY (key, nonce)
);
CREATE INDEX IF NOT EXISTS command_nonces_issued ON command_nonces (issued_ns);
"""


class CommandRefused(GatewayError):
    """A command refused before it ran; ``code`` is one of :data:`RefusalCode`."""

    def __init__(self, code: RefusalCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: RefusalCode = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Checked:
    """A command that may run: its body and, when signed, the verified signer."""

    name: str
    body: dict[str, object]
    signer: str | None = None
    nonce: str | None = None
    issued_ns: int | None = None


def signing_input(hub: str, name: str, key: str, nonce: str, issued_ms: int, command: str) -> bytes:
    """The exact bytes an envelope's signature covers."""
    parts = (hub, name, key, nonce, str(issued_ms), command)
    return SIGNING_CONTEXT + b"".join(b"\n" + part.encode("utf-8") for part in parts)


def sign_command(
    private_key: Ed25519PrivateKey,
    key: str,
    hub: str,
    name: str,
    body: dict[str, object],
    issued_ms: int,
    nonce: str | None = None,
) -> dict[str, object]:
    """The envelope of a command (what a scanner, WMS or planner publishes)."""
    nonce = nonce or secrets.token_hex(12)
    command = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    signature = private_key.sign(signing_input(hub, name, key, nonce, issued_ms, command))
    return {
        "key": key,
        "nonce": nonce,
        "issued_ms": issued_ms,
        "command": command,
        "sig": base64.b64encode(signature).decode(),
    }


def is_envelope(body: dict[str, object]) -> bool:
    """True when a command body is a signed envelope (it has a ``sig``)."""
    return "sig" in body


class CommandGuard:
    """Checks commands against the enrolled keys, the hub's clock and the nonces seen.

    Runs on the journal thread (the nonce table is in the journal). :meth:`check` does
    not record anything; :meth:`commit` records the nonce once the command was handled,
    so a crash in between gets the broker's redelivery checked afresh instead of refused
    as a replay (the custody ledger and the alert store are idempotent for it).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        hub: str,
        ring: KeyRing,
        *,
        require_signatures: bool,
        max_future_s: float,
        max_age_s: float,
    ) -> None:
        self._db = db
        self.hub = hub
        self.ring = ring
        self.require_signatures = require_signatures
        self._max_future_ns = int(max_future_s * NS_PER_S)
        self._max_age_ns = int(max_age_s * NS_PER_S)
        db.executescript(_SCHEMA)

    def check(self, name: str, body: dict[str, object], now_ns: int) -> Checked:
        """The command to run, or CommandRefused with the reason."""
        if not is_envelope(body):
            if self.require_signatures:
                raise CommandRefused(
                    "unsigned",
                    "this hub requires signed commands (see docs/security.md)",
                )
            return Checked(name, body)
        key_name, nonce, issued_ms, command, signature = _fields(body)
        self.ring.refresh()
        key = self.ring.get(key_name)
        if key is None:
            raise CommandRefused("unknown_key", f"no key {key_name!r} is enrolled at this hub")
        if not key.active:
            raise CommandRefused("revoked_key", f"key {key_name!r} was revoked")
        if name not in key.roles:
            raise CommandRefused(
                "not_allowed",
                f"key {key_name!r} may sign {', '.join(key.roles)} commands, not {name}",
            )
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        public = Ed25519PublicKey.from_public_bytes(key.public_bytes())
        try:
            public.verify(
                signature, signing_input(self.hub, name, key_name, nonce, issued_ms, command)
            )
        except InvalidSignature:
            raise CommandRefused(
                "bad_signature",
                f"the signature does not match key {key_name!r} (altered command, another"
                " key, or signed for another hub or command)",
            ) from None
        issued_ns = issued_ms * 1_000_000
        if issued_ns > now_ns + self._max_future_ns:
            raise CommandRefused(
                "future_dated",
                f"issued {(issued_ns - now_ns) / NS_PER_S:.0f} s after the hub's clock"
                f" (at most {self._max_future_ns // NS_PER_S} s allowed)",
            )
        if issued_ns < now_ns - self._max_age_ns:
            raise CommandRefused(
                "expired",
                f"issued {(now_ns - issued_ns) / NS_PER_S:.0f} s ago"
                f" (at most {self._max_age_ns // NS_PER_S} s)",
            )
        seen = self._db.execute(
            "SELECT seen_ns FROM command_nonces WHERE key = ? AND nonce = ?", (key_name, nonce)
        ).fetchone()
        if seen is not None:
            raise CommandRefused(
                "replayed", f"key {key_name!r} already used nonce {nonce!r}; nothing applied"
            )
        try:
            decoded = json.loads(command)
        except ValueError as exc:
            raise CommandRefused("malformed", f"command is not JSON: {exc}") from None
        if not isinstance(decoded, dict):
            raise CommandRefused("malformed", "command must be a JSON object")
        return Checked(name, decoded, key_name, nonce, issued_ns)

    def commit(self, checked: Checked, now_ns: int) -> None:
        """Remember a handled signed command's nonce (until it would have expired)."""
        if checked.signer is None or checked.nonce is None or checked.issued_ns is None:
            return
        self._db.execute(
            "INSERT OR IGNORE INTO command_nonces (key, nonce, issued_ns, seen_ns, command)"
            " VALUES (?, ?, ?, ?, ?)",
            (checked.signer, checked.nonce, checked.issued_ns, now_ns, checked.name),
        )

    def prune(self, now_ns: int) -> int:
        """Forget nonces old enough that their commands are refused as expired anyway."""
        cutoff = now_ns - self._max_age_ns - self._max_future_ns
        cur = self._db.execute("DELETE FROM command_nonces WHERE issued_ns < ?", (cutoff,))
        return cur.rowcount


def _fields(body: dict[str, object]) -> tuple[str, str, int, str, bytes]:
    extra = set(body) - ENVELOPE_FIELDS
    if extra:
        raise CommandRefused("malformed", f"unknown envelope fields: {', '.join(sorted(extra))}")
    key, nonce, issued_ms = body.get("key"), body.get("nonce"), body.get("issued_ms")
    command, sig = body.get("command"), body.get("sig")
    if not isinstance(key, str) or not key:
        raise CommandRefused("malformed", "key must be the enrolled key's name")
    if not isinstance(nonce, str) or not NONCE_PATTERN.fullmatch(nonce):
        raise CommandRefused("malformed", "nonce must be 8-64 characters of A-Z a-z 0-9 _ -")
    if not isinstance(issued_ms, int) or isinstance(issued_ms, bool) or issued_ms < 0:
        raise CommandRefused("malformed", "issued_ms must be epoch milliseconds (integer)")
    if not isinstance(command, str) or len(command) > MAX_COMMAND_CHARS:
        raise CommandRefused(
            "malformed", f"command must be the command's JSON text, at most {MAX_COMMAND_CHARS}"
        )
    if not isinstance(sig, str):
        raise CommandRefused("malformed", "sig must be a base64 string")
    try:
        signature = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise CommandRefused("malformed", "sig is not base64") from None
    if len(signature) != 64:
        raise CommandRefused("bad_signature", "an Ed25519 signature has 64 bytes")
    return key, nonce, issued_ms, command, signature
