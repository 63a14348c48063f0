"""``[commands]``: how the hub checks commands (cmd/custody, cmd/ack) before it runs them."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class CommandsConfig(BaseModel):
    """Signatures and time bounds for commands; see gateway/commands/signed.py.

    ``require_signatures`` is off by default so that a hub upgraded in place keeps taking
    its scanners' and planner's commands until their keys are enrolled: the broker's ACL
    (systemd/mosquitto/) is the baseline control, and check-config, the log and
    status.json say loudly that unsigned commands are accepted. A signed command is
    verified whatever this says (a bad signature is always refused). docs/security.md's
    checklist turns it on once every sender signs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    require_signatures: bool = False
    keys_file: str | None = Field(
        default=None,
        description="enrolled device keys; default command-keys.json beside the journal",
    )
    max_future_s: float = Field(
        default=300.0,
        gt=0,
        description="a command issued, or a custody event dated, more than this after the"
        " hub's clock is refused",
    )
    max_age_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="a signed command issued longer ago is refused as expired (its nonce is"
        " remembered this long, so a copy is refused as replayed)",
    )

    def keys_path(self, journal_path: str) -> Path:
        """Where the key file is: the configured path, or next to the journal."""
        if self.keys_file is not None:
            return Path(self.keys_file)
        return Path(journal_path).with_name("command-keys.json")
