"""Commands the planner feed takes in on ``{prefix}cmd/<name>`` (JSON objects).

``cmd/ack`` acknowledges an alert; other names go to the handlers the daemon registers
(``custody``: a scanner's or WMS's handoff). A refused command raises
:class:`CommandRejected`; the feed answers it on ``events`` as ``command.rejected``.

Before a command runs, the :class:`~gateway.commands.signed.CommandGuard` checks its
signature, time and nonce (CommandRefused with a code); a handler gets the verified
signer beside the body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.alerts.store import AlertError, AlertStore
from gateway.commands.signed import Checked, CommandGuard, CommandRefused
from gateway.core.clock import Clock
from gateway.core.errors import GatewayError
from gateway.core.text import Name, Note
from gateway.journal.store import JournalRunner

MAX_COMMAND_BYTES: Final = 16_384  # longer commands are refused before they are parsed

CommandHandler = Callable[[dict[str, object], str | None], Awaitable[None]]
"""A command's handler: the body and the verified signer (None: unsigned)."""


class CommandRejected(GatewayError):
    """A command handler refuses a command; the reason goes back on ``events``."""


class AckCommand(BaseModel):
    """Body of ``cmd/ack`` (docs/schemas/ack-command.schema.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_id: str = Field(min_length=1, max_length=128)
    by: Name
    note: Note = ""


def validation_problems(exc: ValidationError) -> str:
    """One line per pydantic error: ``field.path: message``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    )


class CommandRouter:
    """Parses a command, routes it by name, acknowledges alerts in the journal."""

    def __init__(
        self,
        runner: JournalRunner,
        store: AlertStore,
        clock: Clock,
        handlers: Mapping[str, CommandHandler],
        on_change: Callable[[], None],
        guard: CommandGuard | None = None,
    ) -> None:
        self._runner = runner
        self._store = store
        self._clock = clock
        self._handlers = dict(handlers)
        self._on_change = on_change
        # Set by the notifier: the short ack code of a notification -> its alert id, and
        # who else to tell of an ack.
        self.resolve_ack_code: Callable[[str], str | None] | None = None
        self.on_acknowledged: list[Callable[[], None]] = []
        self._guard = guard

    async def handle(self, name: str, raw: bytes) -> None:
        """Apply one command; CommandRefused (guard), CommandRejected or a handler's ValueError."""
        if len(raw) > MAX_COMMAND_BYTES:
            msg = f"{len(raw)} bytes, at most {MAX_COMMAND_BYTES}"
            raise CommandRefused("malformed", msg)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            msg = f"not JSON: {exc}"
            raise CommandRejected(msg) from exc
        if not isinstance(body, dict):
            msg = "the command must be a JSON object"
            raise CommandRejected(msg)
        checked: Checked | None = None
        signer: str | None = None
        if self._guard is not None:
            checked = await self._runner.call(self._guard.check, name, body, self._clock.now_ns())
            body, signer = checked.body, checked.signer
        try:
            if name == "ack":
                await self._acknowledge(body, signer)
                return
            handler = self._handlers.get(name)
            if handler is None:
                msg = f"unknown command {name!r}"
                raise CommandRejected(msg)
            await handler(body, signer)
        finally:
            # A signed command that was handled (applied or refused by its handler) has
            # spent its nonce: a copy of it is a replay.
            if checked is not None and self._guard is not None:
                await self._runner.call(self._guard.commit, checked, self._clock.now_ns())

    async def _acknowledge(self, body: dict[str, object], signer: str | None = None) -> None:
        try:
            command = AckCommand.model_validate(body)
        except ValidationError as exc:
            raise CommandRejected(validation_problems(exc)) from exc
        alert_id = command.alert_id
        resolve = self.resolve_ack_code
        if resolve is not None and await self._runner.call(self._store.get, alert_id) is None:
            found = await self._runner.call(resolve, alert_id)
            alert_id = found if found is not None else alert_id
        try:
            await self._runner.call(
                self._store.acknowledge,
                alert_id,
                command.by,
                self._clock.now_ns(),
                command.note,
                signer,
            )
        except AlertError as exc:  # UnknownAlert, AlertAlreadyCleared
            raise CommandRejected(str(exc)) from exc
        # The ack appended an "acknowledged" event to the outbox.
        self._on_change()
        for listener in self.on_acknowledged:
            listener()
