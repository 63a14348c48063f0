"""Secrets come from an environment variable or a file, never required inline.

A file path may use ``${CREDENTIALS_DIRECTORY}`` so systemd's LoadCredential= works.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from gateway.core.errors import ConfigError


class SecretRef(BaseModel):
    """Where a secret lives: an environment variable, a file, or (discouraged) inline.

    An inline ``value`` is a ``SecretStr``: repr, str, logs and status show ``**********``,
    never the secret (check-config warns about it: the config file must then be as
    private as the secret).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: str | None = None
    value: SecretStr | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            msg = "give exactly one of env, file or value"
            raise ValueError(msg)
        return self

    def resolve(self) -> str:
        """Read the secret now; a missing variable or file is a ConfigError."""
        if self.value is not None:
            return self.value.get_secret_value()
        if self.env is not None:
            found = os.environ.get(self.env)
            if found is None:
                msg = f"environment variable {self.env} is not set"
                raise ConfigError(msg)
            return found
        assert self.file is not None
        path = Path(os.path.expandvars(self.file))
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"cannot read secret file {path}: {exc.strerror}"
            raise ConfigError(msg) from exc
