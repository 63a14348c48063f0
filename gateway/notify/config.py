"""``[notify]``: contacts (Apprise URLs or a JSON webhook) and escalation policies.

A channel URL is a template: ``{name}`` placeholders are filled at send time from the
channel's ``secrets`` (the gateway's usual secret references: env, file, systemd
credentials), URL-quoted. The template is what logs, status and ``check-config`` show,
so a secret never leaves the process except inside the request it authenticates.

Apprise is imported only to validate a URL (config load with contacts configured) and to
send; a gateway without ``[notify]`` never loads it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.core.secrets import SecretRef

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
SeverityName = Literal["info", "warning", "critical"]
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# What validation puts in place of a secret: URL-safe, and long enough for every plugin
# that checks the length of a token.
_PLACEHOLDER_VALUE = "Aa0" * 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def fill(template: str, secrets: dict[str, str]) -> str:
    """The template with each ``{name}`` replaced by its URL-quoted secret."""
    return PLACEHOLDER.sub(lambda m: quote(secrets[m.group(1)], safe=""), template)


def apprise_problem(url: str) -> str | None:
    """Why Apprise cannot use this URL, or None when it can (imports apprise)."""
    import apprise

    if apprise.Apprise.instantiate(url) is None:
        scheme = url.split("://", 1)[0] if "://" in url else url
        return (
            f"Apprise does not accept this URL (scheme {scheme!r}: unknown service, or a"
            " required part is missing; see the Apprise wiki for the service's format)"
        )
    return None


class ChannelConfig(_Strict):
    """One way to reach a contact: an Apprise URL, or a plain JSON webhook."""

    kind: Literal["apprise", "webhook"] = "apprise"
    url: str = Field(min_length=1)
    secrets: dict[str, SecretRef] = {}
    headers: dict[str, str] = Field(
        default={}, description="webhook only: extra request headers, {name} placeholders ok"
    )
    timeout_s: float = Field(default=15.0, gt=0, le=300)
    label: str = Field(default="", description="how the record names this channel")

    @field_validator("url")
    @classmethod
    def _no_blank(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _check(self) -> ChannelConfig:
        used = set(PLACEHOLDER.findall(self.url))
        for value in self.headers.values():
            used |= set(PLACEHOLDER.findall(value))
        missing = sorted(used - set(self.secrets))
        if missing:
            msg = f"placeholder(s) {', '.join(missing)} have no entry in secrets"
            raise ValueError(msg)
        unused = sorted(set(self.secrets) - used)
        if unused:
            msg = f"secrets {', '.join(unused)} are not used by url or headers"
            raise ValueError(msg)
        sample = fill(self.url, dict.fromkeys(self.secrets, _PLACEHOLDER_VALUE))
        if self.kind == "webhook":
            parts = urlsplit(sample)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                msg = "a webhook url must be http(s)://host/... (https outside a lab)"
                raise ValueError(msg)
        else:
            if self.headers:
                msg = "headers are for kind = 'webhook'; Apprise takes +Header=value in the URL"
                raise ValueError(msg)
            problem = apprise_problem(sample)
            if problem is not None:
                raise ValueError(problem)
        return self

    @property
    def name(self) -> str:
        """Label for the record: the configured label, else the URL scheme."""
        if self.label:
            return self.label
        if self.kind == "webhook":
            return "webhook"
        return self.url.split("://", 1)[0].lower()

    def display_url(self) -> str:
        """The URL as configured (placeholders, never secrets): safe to log and show."""
        return self.url


class ContactConfig(_Strict):
    """A person or system to notify: one or more channels, each tried independently."""

    name: Name
    channels: list[ChannelConfig] = Field(min_length=1)


class LevelConfig(_Strict):
    """One escalation step: who, and how long after the raise if nobody acknowledged."""

    delay_s: float = Field(default=0.0, ge=0)
    contacts: list[str] = Field(min_length=1)


class QuietHours(_Strict):
    """Hub-local ``HH:MM`` span (may wrap midnight) in which warnings wait; critical never."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            msg = f"{value!r} is not a 24-hour HH:MM time such as '22:00'"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _span(self) -> QuietHours:
        if self.start == self.end:
            msg = "start and end are equal: quiet hours would be empty"
            raise ValueError(msg)
        return self

    def minutes(self) -> tuple[int, int]:
        """(start, end) as minutes after local midnight."""
        h1, m1 = self.start.split(":")
        h2, m2 = self.end.split(":")
        return int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)


class PolicyConfig(_Strict):
    """Which alerts it takes (severity, optionally zone or rule) and its levels.

    The first policy in file order that matches an alert is its policy.
    """

    name: Name
    severities: list[SeverityName] = Field(min_length=1)
    zones: list[str] = []
    rules: list[str] = []
    levels: list[LevelConfig] = Field(min_length=1)
    repeat_s: float | None = Field(
        default=None, gt=0, description="re-notify the last level this often until acked"
    )
    quiet_hours: QuietHours | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PolicyConfig:
        delays = [level.delay_s for level in self.levels]
        if delays != sorted(delays):
            msg = f"levels must have non-decreasing delay_s, got {delays}"
            raise ValueError(msg)
        return self


class NotifyConfig(_Strict):
    """``[notify]``: contacts, policies, storm grouping and retries."""

    contacts: list[ContactConfig] = []
    policies: list[PolicyConfig] = []
    group_wait_s: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="a message waits this long after its trigger so a storm becomes one"
        " message per contact",
    )
    retry_initial_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    give_up_after_s: float = Field(
        default=86_400.0, gt=0, description="a message failing this long is marked failed"
    )
    sink_down_after_s: float = Field(
        default=600.0,
        gt=0,
        description="raise the gateway's sink_down alert when InfluxDB or the planner broker"
        " has been unreachable this long",
    )
    ack_url: str | None = Field(
        default=None,
        description="optional link put in each message, '{code}' replaced by the ack code",
    )

    def contact(self, name: str) -> ContactConfig | None:
        """The contact with this name, if configured."""
        return next((c for c in self.contacts if c.name == name), None)


def reference_problems(notify: NotifyConfig | None, zone_ids: set[str]) -> list[str]:
    """Cross-references of ``[notify]`` as "path: message" (paths from the file's top).

    Called by GatewayConfig, which knows the zones: duplicate contacts and policies,
    levels naming unknown contacts, policies naming unknown zones, a bad ack_url.
    """
    if notify is None:
        return []
    problems: list[str] = []
    seen: set[str] = set()
    for i, contact in enumerate(notify.contacts):
        if contact.name in seen:
            problems.append(f"notify.contacts[{i}].name: duplicate contact {contact.name!r}")
        seen.add(contact.name)
    policy_names: set[str] = set()
    for p_i, policy in enumerate(notify.policies):
        where = f"notify.policies[{p_i}]"
        if policy.name in policy_names:
            problems.append(f"{where}.name: duplicate policy {policy.name!r}")
        policy_names.add(policy.name)
        for l_i, level in enumerate(policy.levels):
            for c_i, name in enumerate(level.contacts):
                if name not in seen:
                    problems.append(
                        f"{where}.levels[{l_i}].contacts[{c_i}]: unknown contact {name!r}"
                        f" (known: {', '.join(sorted(seen)) or 'none'})"
                    )
        for z_i, zone in enumerate(policy.zones):
            if zone not in zone_ids:
                problems.append(f"{where}.zones[{z_i}]: unknown zone {zone!r}")
    if notify.ack_url is not None and "{code}" not in notify.ack_url:
        problems.append("notify.ack_url: must contain {code}")
    return problems
