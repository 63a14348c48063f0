"""``[evidence]``: the tamper-evident history, the hub key and signed checkpoints.

Leaf module (pydantic only), imported by ``gateway.config``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class EvidenceConfig(BaseModel):
    """How records are sealed, signed and anchored (docs/evidence.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description="seal every journaled record into the evidence chain (off: no chain,"
        " no checkpoints; only for measuring its cost)",
    )
    seal_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="a commit seals what was appended when the last seal is this old (0: every"
        " commit); rows written between commits are sealed by the evidence loop as often",
    )
    checkpoint_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="a signed checkpoint at least this often (also at start, stop and every"
        " custody handoff)",
    )
    key_file: str | None = Field(
        default=None,
        description="the hub's Ed25519 private key (PEM, mode 0600); default hub-key.pem next"
        " to the journal; a systemd credential named coldchain-hub-key takes precedence",
    )

    def key_path(self, journal_path: str) -> Path:
        """Where the hub key lives."""
        if self.key_file is not None:
            return Path(self.key_file)
        return Path(journal_path).with_name("hub-key.pem")
