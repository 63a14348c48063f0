"""The daemon's evidence work: seal, sign checkpoints, and hand them to the sinks.

Wiring (``gateway.runtime.daemon``): the :class:`~gateway.evidence.chain.Sealer` is hooked
into the journal's commit (``Journal.sealer``), :meth:`EvidenceService.run` seals rows
written outside a reading commit (custody events, alert events) and makes a signed
checkpoint at start, every ``checkpoint_interval_s``, at each custody handoff and at stop.
Checkpoints go to InfluxDB through the forwarder (:func:`checkpoint_stream`) and to the
planner feed (:meth:`EvidenceService.drain_planner`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway.core.clock import Clock, iso_utc
from gateway.evidence import checkpoint as cp
from gateway.evidence.chain import Sealer, config_fingerprint, log_config
from gateway.journal.store import Journal, JournalRunner
from gateway.outbox.lineprotocol import FieldValue, line
from gateway.outbox.streams import Stream

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.config import GatewayConfig

log = logging.getLogger(__name__)

PLANNER_SINK = "planner"
TICK_S = 2.0


def redacted(document: Any) -> Any:
    """The config dump with inline secret values replaced (they must not be hashed or logged)."""
    if isinstance(document, dict):
        out = {k: redacted(v) for k, v in document.items()}
        if "value" in out and ("env" in out or "file" in out) and out["value"] is not None:
            out["value"] = "<redacted>"
        return out
    if isinstance(document, list):
        return [redacted(v) for v in document]
    return document


def fingerprint_of(config: GatewayConfig) -> str:
    """The config fingerprint shown in reports: SHA-256 over its canonical JSON (redacted)."""
    return config_fingerprint(redacted(config.model_dump(mode="json")))


def calibration_of(config: GatewayConfig) -> dict[str, dict[str, object]]:
    """Per sensor: what a calibration change alters (journaled with the config)."""
    out: dict[str, dict[str, object]] = {}
    for sensor in config.sensors:
        dumped = sensor.model_dump(mode="json")
        out[sensor.id] = {k: v for k, v in dumped.items() if k != "id"}
    return out


def checkpoint_line(checkpoint: cp.Checkpoint) -> str:
    """InfluxDB point, measurement ``evidence_checkpoint`` at the checkpoint's time."""
    fields: dict[str, FieldValue] = {
        "seq": checkpoint.seq,
        "head": checkpoint.head,
        "rows": json.dumps(dict(sorted(checkpoint.rows.items())), separators=(",", ":")),
        "key": checkpoint.key,
        "signature": checkpoint.signature,
        "body": checkpoint.body_bytes().decode("utf-8"),
    }
    return line(
        cp.MEASUREMENT,
        {"hub": checkpoint.hub, "reason": checkpoint.reason},
        fields,
        checkpoint.at_ns,
    )


def checkpoint_stream() -> Stream:
    """Journaled checkpoints as line protocol for the InfluxDB forwarder."""

    def fetch(journal: Journal, after: int, limit: int) -> tuple[int, int, bytes]:
        rows = cp.stored_after(journal.connection, after, limit)
        if not rows:
            return after, 0, b""
        body = "\n".join(checkpoint_line(c) for c in rows).encode("utf-8")
        return rows[-1].id, len(rows), body

    return Stream(cp.STREAM, fetch)


class EvidenceService:
    """Owns the sealer, the hub key and the checkpoint schedule of one running gateway."""

    def __init__(
        self, config: GatewayConfig, journal: Journal, runner: JournalRunner, clock: Clock
    ) -> None:
        self.config = config
        self.settings = config.evidence
        self.hub = config.hub.id
        self._journal = journal
        self._runner = runner
        self._clock = clock
        self.sealer = Sealer(
            journal.connection,
            clock.now_ns,
            interval_ns=int(self.settings.seal_interval_s * 1e9),
        )
        cp.ensure_schema(journal.connection)
        journal.sealer = self.sealer
        self.key: Ed25519PrivateKey | None = None
        self.key_problem: str | None = None
        self.public_key_b64 = ""
        self.fingerprint = ""
        self._load_key()
        self.config_fingerprint = fingerprint_of(config)
        self.checkpoints = 0
        self.last_checkpoint: cp.Checkpoint | None = None
        self._custody_sealed = self.sealer.state.sealed.get("custody_events", 0)
        self._wake = asyncio.Event()
        self._key_published = False
        # Woken after each checkpoint (the forwarder, the planner feed): a checkpoint
        # leaves the box at once, not at the sinks' next unrelated wake-up.
        self.on_checkpoint: list[Callable[[], None]] = []

    def _load_key(self) -> None:
        from gateway.core.keys import (
            KeyError_,
            fingerprint,
            load_private_key,
            public_b64,
            public_raw,
        )

        path = self.settings.key_path(self.config.journal.path)
        try:
            self.key = load_private_key(path)
        except KeyError_ as exc:
            self.key_problem = str(exc)
            log.warning("evidence: checkpoints will be UNSIGNED: %s", exc)
            return
        public = self.key.public_key()
        self.public_key_b64 = public_b64(public)
        self.fingerprint = fingerprint(public_raw(public))
        log.info("evidence: hub key %s (fingerprint %s)", path, self.fingerprint)

    def wake(self) -> None:
        """Seal and look for a handoff now (a custody event was applied)."""
        self._wake.set()

    async def start(self) -> None:
        """Journal the config in force (if it changed), seal, and checkpoint the start."""
        detail: Mapping[str, object] = {
            "fingerprint": self.config_fingerprint,
            "calibration": calibration_of(self.config),
        }
        now = self._clock.now_ns()
        await self._runner.call(
            log_config, self._journal.connection, self.config_fingerprint, detail, now
        )
        await self.checkpoint("start")

    async def checkpoint(self, reason: str) -> cp.Checkpoint:
        """Seal what is pending, then sign and journal a checkpoint of the head."""

        def work() -> cp.Checkpoint:
            now = self._clock.now_ns()
            self.sealer.seal_now(now)
            made = cp.make(self.hub, self.sealer.state, reason, now, self.key)
            cp.store(self._journal.connection, made)
            return made

        made = await self._runner.call(work)
        self.checkpoints += 1
        self.last_checkpoint = made
        for listener in self.on_checkpoint:
            listener()
        self._custody_sealed = self.sealer.state.sealed.get("custody_events", 0)
        return made

    async def run(self) -> None:
        """Seal every tick; checkpoint on a handoff and every checkpoint_interval_s."""
        interval_ns = int(self.settings.checkpoint_interval_s * 1e9)
        tick = min(TICK_S, self.settings.seal_interval_s or TICK_S)
        while True:
            try:
                async with asyncio.timeout(tick):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                now = self._clock.now_ns()
                await self._runner.call(self.sealer.seal_now, now)
                custody = self.sealer.state.sealed.get("custody_events", 0)
                last_at = self.last_checkpoint.at_ns if self.last_checkpoint else 0
                if custody > self._custody_sealed:
                    await self.checkpoint("handoff")
                elif now - last_at >= interval_ns:
                    await self.checkpoint("interval")
            except Exception:
                log.exception("evidence: seal/checkpoint failed; retrying next tick")

    def status(self) -> dict[str, object]:
        """For status.json: where the chain stands and whether checkpoints are signed."""
        state = self.sealer.state
        return {
            "chain_seq": state.seq,
            "chain_head": state.head,
            "checkpoints": self.checkpoints,
            "signed": self.key is not None,
            "key_fingerprint": self.fingerprint,
            "key_problem": self.key_problem,
            "seal_failures": self.sealer.failures,
        }

    # -- planner feed ----------------------------------------------------------------------

    async def drain_planner(self, feed: Any, client: Any) -> None:
        """Publish the hub key (retained) and each new checkpoint (retained + event)."""
        qos = feed.config.qos
        if not self._key_published and self.public_key_b64:
            key_doc = {
                "hub": self.hub,
                "algorithm": "Ed25519",
                "public_key": self.public_key_b64,
                "fingerprint": self.fingerprint,
            }
            await client.publish(
                feed.prefix + "evidence/key", cp.canonical_json(key_doc), qos=qos, retain=True
            )
            self._key_published = True
        runner = self._runner
        journal = self._journal
        position = await runner.call(journal.cursor, PLANNER_SINK, cp.STREAM)
        while True:
            batch = await runner.call(cp.stored_after, journal.connection, position, 100)
            if not batch:
                return
            for made in batch:
                doc = made.to_json()
                event = {
                    "schema": "1",
                    "type": "evidence.checkpoint",
                    "at": iso_utc(made.at_ns),
                    **doc,
                }
                await client.publish(feed.events_topic, cp.canonical_json(event), qos=qos)
                await client.publish(
                    feed.prefix + "evidence/checkpoint",
                    cp.canonical_json(doc),
                    qos=qos,
                    retain=True,
                )
                position = made.id
                await runner.call(
                    journal.set_cursor, PLANNER_SINK, cp.STREAM, position, self._clock.now_ns()
                )
