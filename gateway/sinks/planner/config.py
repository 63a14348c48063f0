"""``[sinks.planner]``: leaf settings model (no MQTT client loaded by the config)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from gateway.core.tls import MqttConnectionConfig


class PlannerConfig(MqttConnectionConfig):
    """``[sinks.planner]``: the broker of the planner feed and how to publish there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic_prefix: str = "coldchain/v1/{hub}/"
    qos: Literal[1] = 1
    status_interval_s: float = Field(default=30, gt=0)
    max_backoff_s: float = Field(default=30, gt=0)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        try:
            formatted = value.format(hub="hub")
        except (KeyError, IndexError, ValueError) as exc:
            msg = f"only the placeholder {{hub}} is allowed ({exc})"
            raise ValueError(msg) from exc
        if not formatted.endswith("/") or formatted.startswith("/"):
            msg = "must end with '/' and not start with '/', e.g. 'coldchain/v1/{hub}/'"
            raise ValueError(msg)
        if "+" in formatted or "#" in formatted or "//" in formatted:
            msg = "must not contain MQTT wildcards (+, #) or empty levels"
            raise ValueError(msg)
        return value
