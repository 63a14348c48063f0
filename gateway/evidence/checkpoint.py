"""Signed checkpoints: the chain head, counts and time, signed with the hub key, sent away.

A checkpoint states "at time T this hub's evidence chain had N entries ending in head H,
covering these many rows per table", signed (Ed25519) with the hub key. It is journaled
(``evidence_checkpoints``), forwarded to InfluxDB (measurement ``evidence_checkpoint``,
docs/evidence.md) and published on the planner feed (retained ``evidence/checkpoint`` and
an ``evidence.checkpoint`` event): copies a later rewrite of the journal cannot reach.
Checkpoints are made every ``evidence.checkpoint_interval_s``, at every custody handoff,
at start and at stop.

The signed bytes are the canonical JSON of the body (:func:`body_bytes`); a verifier needs
only the body, the signature and the hub's public key.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from gateway.evidence.chain import ChainHead

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

FORMAT: Final = "coldchain-checkpoint/1"
MEASUREMENT: Final = "evidence_checkpoint"
STREAM: Final = "evidence_checkpoints"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evidence_checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ns INTEGER NOT NULL,
    body TEXT NOT NULL,
    signature TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed statement of where the chain stood."""

    hub: str
    seq: int
    head: str
    at_ns: int
    reason: str  # start | interval | handoff | stop | report
    rows: Mapping[str, int] = field(default_factory=dict)
    key: str = ""  # fingerprint of the signing key ("" = unsigned: no key configured)
    signature: str = ""  # base64 Ed25519 over body_bytes()
    id: int = 0  # journal row id (0 when read from an external copy)

    def body(self) -> dict[str, object]:
        """What the signature covers."""
        return {
            "format": FORMAT,
            "hub": self.hub,
            "seq": self.seq,
            "head": self.head,
            "at_ns": self.at_ns,
            "reason": self.reason,
            "rows": dict(sorted(self.rows.items())),
            "key": self.key,
        }

    def body_bytes(self) -> bytes:
        """Canonical JSON of the body: sorted keys, no whitespace, UTF-8."""
        return canonical_json(self.body())

    def to_json(self) -> dict[str, object]:
        """The body with its signature (journal, planner feed, InfluxDB, reports)."""
        return {**self.body(), "signature": self.signature}

    def verify(self, public: Ed25519PublicKey) -> bool:
        """True when the signature is the key's over the body."""
        from gateway.core.keys import verify_signature

        if not self.signature:
            return False
        try:
            raw = base64.b64decode(self.signature, validate=True)
        except ValueError:
            return False
        return verify_signature(public, raw, self.body_bytes())


def canonical_json(data: Mapping[str, object]) -> bytes:
    """Compact sorted JSON, UTF-8 (the form every signature and hash here is over)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


class CheckpointError(ValueError):
    """A checkpoint document that cannot be read."""


def from_json(data: Mapping[str, Any] | str | bytes) -> Checkpoint:
    """A checkpoint from its JSON (as published or exported); CheckpointError if malformed."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise CheckpointError(f"not JSON: {exc}") from exc
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        msg = f"not a {FORMAT} document"
        raise CheckpointError(msg)
    try:
        rows = data.get("rows", {})
        return Checkpoint(
            hub=str(data["hub"]),
            seq=int(data["seq"]),
            head=str(data["head"]),
            at_ns=int(data["at_ns"]),
            reason=str(data["reason"]),
            rows={str(k): int(v) for k, v in rows.items()},
            key=str(data.get("key", "")),
            signature=str(data.get("signature", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"malformed checkpoint: {exc}"
        raise CheckpointError(msg) from exc


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the checkpoint table (idempotent)."""
    db.executescript(_SCHEMA)


def make(
    hub: str,
    head: ChainHead,
    reason: str,
    now_ns: int,
    private: Ed25519PrivateKey | None,
) -> Checkpoint:
    """A checkpoint of the chain's current head, signed when a key is given."""
    rows = dict(head.rows)
    unsigned = Checkpoint(hub, head.seq, head.head, now_ns, reason, rows)
    if private is None:
        return unsigned
    from gateway.core.keys import fingerprint, public_raw

    signed_body = Checkpoint(
        hub,
        head.seq,
        head.head,
        now_ns,
        reason,
        rows,
        key=fingerprint(public_raw(private.public_key())),
    )
    signature = base64.b64encode(private.sign(signed_body.body_bytes())).decode("ascii")
    return Checkpoint(hub, head.seq, head.head, now_ns, reason, rows, signed_body.key, signature)


def store(db: sqlite3.Connection, checkpoint: Checkpoint) -> int:
    """Journal a checkpoint; returns its row id (the outbox cursor position)."""
    cur = db.execute(
        "INSERT INTO evidence_checkpoints (at_ns, body, signature) VALUES (?, ?, ?)",
        (checkpoint.at_ns, checkpoint.body_bytes().decode("utf-8"), checkpoint.signature),
    )
    return int(cur.lastrowid or 0)


def stored_after(db: sqlite3.Connection, after: int, limit: int) -> list[Checkpoint]:
    """Journaled checkpoints with id > after, oldest first."""
    try:
        rows = db.execute(
            "SELECT id, body, signature FROM evidence_checkpoints WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()
    except sqlite3.OperationalError:
        return []  # a journal from before evidence
    out: list[Checkpoint] = []
    for row in rows:
        body = json.loads(row[1])
        cp = from_json({**body, "signature": row[2]})
        out.append(
            Checkpoint(
                cp.hub,
                cp.seq,
                cp.head,
                cp.at_ns,
                cp.reason,
                cp.rows,
                cp.key,
                cp.signature,
                id=int(row[0]),
            )
        )
    return out
