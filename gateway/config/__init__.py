"""The gateway's one config file: TOML, validated by pydantic; unknown keys are errors."""

from __future__ import annotations

import datetime
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from drivers.base import DriverConfig
from drivers.registry import REGISTRY
from gateway.commands.config import CommandsConfig
from gateway.core.errors import ConfigError
from gateway.core.model import IDENTIFIER_PATTERN
from gateway.core.secrets import SecretRef
from gateway.evidence.settings import EvidenceConfig
from gateway.notify.config import NotifyConfig, reference_problems
from gateway.sinks.planner.config import PlannerConfig
from gateway.sop.profiles import DEFAULT_PROFILES, ProductProfile
from gateway.sop.settings import DEFAULT_DWELL_RULES, DwellRule, HealthSettings

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
ZoneKind = Literal["receiving", "cold_storage", "packout", "staging", "dock", "vehicle"]


def _known_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"unknown time zone {name!r} (use an IANA name such as Europe/Lisbon)"
        raise ValueError(msg) from exc
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubConfig(_Strict):
    """Which hub this gateway serves."""

    id: Identifier
    name: str = ""
    timezone: Annotated[str, AfterValidator(_known_timezone)] = "UTC"


class JournalConfig(_Strict):
    """The local SQLite journal, the edge's source of truth."""

    path: str = "coldchain-journal.db"
    commit_interval_ms: int = Field(
        default=2000,
        ge=1,
        le=5000,
        description="longest a reading waits for its commit (and its PUBACK); a batch that"
        " changes an alert, or a burst, commits at once",
    )
    commit_max_rows: int = Field(default=5000, ge=1, le=100_000)
    synchronous: Literal["full", "normal"] = "full"
    retention_days: float = Field(
        default=35.0, gt=0, description="keep delivered readings this long (traces, audits)"
    )
    max_size_mb: float | None = Field(
        default=2048.0,
        gt=0,
        description="disk budget for the journal's data; over it, delivered readings go"
        " first, then undelivered readings are downsampled (custody and alerts never go)",
    )
    downsample_s: float = Field(
        default=60.0,
        gt=0,
        description="when undelivered readings must be thinned: one per sensor per this many s",
    )
    card_endurance_tb: float = Field(
        default=10.0,
        gt=0,
        description="the storage's rated endurance in TB written (from the card's datasheet),"
        " for the wear projection in coldchain status",
    )


class SensorConfig(_Strict):
    """A physical probe, the zone it measures and its calibration."""

    id: Identifier
    zone: Identifier
    model: Literal["ds18b20", "sht3x", "pt100", "generic"] = "generic"
    interval_s: float = Field(default=10.0, gt=0)
    offset_c: float = 0.0
    calibration_id: str | None = Field(
        default=None, description="the calibration certificate's id (shown in claim reports)"
    )
    serial: str | None = Field(default=None, max_length=64, description="the probe's serial")
    accuracy_c: float | None = Field(
        default=None, gt=0, description="the probe's stated accuracy, +/- °C"
    )
    calibration_due: datetime.date | None = Field(
        default=None,
        description="when the calibration certificate expires; a report covering a later"
        " time lists the sensor as a review reason",
    )
    min_valid_c: float = -60.0
    max_valid_c: float = 80.0

    @model_validator(mode="after")
    def _range(self) -> SensorConfig:
        if self.min_valid_c >= self.max_valid_c:
            msg = "min_valid_c must be below max_valid_c"
            raise ValueError(msg)
        return self


class ZoneConfig(_Strict):
    """A place in the hub that holds goods at a temperature."""

    id: Identifier
    kind: ZoneKind
    name: str = ""
    profile: str | None = None
    aggregate: Literal["worst", "median"] = "worst"


class DriversConfig(_Strict):
    """Input drivers: one table per registry entry (``[[drivers.<name>]]``).

    The tables are made from ``drivers.registry.REGISTRY`` (see ``_DriverTables``), so a
    new driver needs no edit here.
    """

    def blocks(self) -> Iterator[tuple[str, int, DriverConfig]]:
        """(driver name, index in its table, block) for every configured driver."""
        for kind in REGISTRY:
            for i, block in enumerate(getattr(self, kind)):
                yield kind, i, block


if TYPE_CHECKING:
    _DriverTables = DriversConfig
else:
    _DriverTables = create_model(
        "DriversConfig",
        __base__=DriversConfig,
        __doc__=DriversConfig.__doc__,
        **{
            kind: (list[spec.config], Field(default_factory=list))
            for kind, spec in REGISTRY.items()
        },
    )


class InfluxSinkConfig(_Strict):
    """InfluxDB output: v1 ``/write`` (db/rp) or v2 write API (org/bucket/token)."""

    api: Literal["v1", "v2"] = "v1"
    url: str = "http://127.0.0.1:8086"
    database: str = "coldchain"
    retention_policy: str | None = None
    org: str | None = None
    bucket: str | None = None
    token: SecretRef | None = None
    username: str | None = None
    password: SecretRef | None = None
    ca_file: str | None = None
    verify_tls: bool = True
    batch_size: int = Field(default=5000, ge=1, le=50_000)
    timeout_s: float = Field(default=10.0, gt=0)
    max_backoff_s: float = Field(default=30.0, gt=0)
    cursor_save_s: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="journal the sink's cursors at most this often (0: after every batch);"
        " after a crash up to this much is sent again and overwrites itself",
    )

    @model_validator(mode="after")
    def _api_fields(self) -> InfluxSinkConfig:
        if self.api == "v2" and (not self.org or not self.bucket):
            msg = 'api = "v2" needs org and bucket'
            raise ValueError(msg)
        if not self.url.startswith(("http://", "https://")):
            msg = "url must start with http:// or https://"
            raise ValueError(msg)
        if "@" in urlsplit(self.url).netloc:
            # InfluxDB ignores credentials in the URL, and every log line, check-config
            # summary and status.json that shows the URL would show the password.
            msg = "url must not carry user:password@; use username/password or token"
            raise ValueError(msg)
        return self


class SinksConfig(_Strict):
    """Outputs fed from the journal, each with its own cursor."""

    influx: InfluxSinkConfig | None = None
    planner: PlannerConfig | None = None


class LoggingConfig(_Strict):
    """Log level and format (json for journald/log shippers, text for humans)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "text"


class GatewayConfig(_Strict):
    """The whole config file."""

    hub: HubConfig
    journal: JournalConfig = JournalConfig()
    profiles: dict[str, ProductProfile] = {}
    sensors: list[SensorConfig] = []
    zones: list[ZoneConfig] = []
    drivers: _DriverTables = Field(default_factory=_DriverTables)
    sinks: SinksConfig = SinksConfig()
    commands: CommandsConfig = CommandsConfig()
    logging: LoggingConfig = LoggingConfig()
    health: HealthSettings = HealthSettings()
    dwell_rules: list[DwellRule] = list(DEFAULT_DWELL_RULES)
    notify: NotifyConfig | None = None
    clock_skew_bound_s: float = Field(default=120.0, gt=0)
    status_interval_s: float = Field(default=10.0, gt=0)
    evidence: EvidenceConfig = EvidenceConfig()

    @field_validator("profiles", mode="before")
    @classmethod
    def _profile_names(cls, value: Any) -> Any:
        # [profiles.chilled] needs no name = "chilled" inside it.
        if isinstance(value, dict):
            return {
                k: {"name": k, **v} if isinstance(v, dict) and "name" not in v else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        problems: list[str] = []
        zone_ids = [z.id for z in self.zones]
        sensor_ids = [s.id for s in self.sensors]
        problems += [f"zones: duplicate id {d!r}" for d in _duplicates(zone_ids)]
        problems += [f"sensors: duplicate id {d!r}" for d in _duplicates(sensor_ids)]
        known_profiles = set(DEFAULT_PROFILES) | set(self.profiles)
        for i, z in enumerate(self.zones):
            if z.profile is not None and z.profile not in known_profiles:
                problems.append(
                    f"zones[{i}].profile: unknown profile {z.profile!r}"
                    f" (defaults: {', '.join(sorted(DEFAULT_PROFILES))})"
                )
        for name, profile in self.profiles.items():
            if profile.name != name:
                problems.append(f"profiles.{name}.name: must equal the table name {name!r}")
        for i, s in enumerate(self.sensors):
            if s.zone not in zone_ids:
                problems.append(f"sensors[{i}].zone: unknown zone {s.zone!r}")
        problems += _driver_problems(self.drivers, set(sensor_ids))
        problems += reference_problems(self.notify, set(zone_ids))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def all_profiles(self) -> dict[str, ProductProfile]:
        """Built-in profiles overlaid with the ones this file defines."""
        return {**DEFAULT_PROFILES, **self.profiles}

    def sensor(self, sensor_id: str) -> SensorConfig | None:
        """The sensor with this id, if configured."""
        return self.sensor_index().get(sensor_id)

    def sensor_index(self) -> dict[str, SensorConfig]:
        """Sensors by id."""
        return {s.id: s for s in self.sensors}


def _driver_problems(drivers: DriversConfig, sensor_ids: set[str]) -> list[str]:
    """Generic checks over every driver block: names, sensor references, resources."""
    problems: list[str] = []
    names: dict[str, str] = {}
    holders: dict[str, str] = {}
    for kind, i, block in drivers.blocks():
        where = f"drivers.{kind}[{i}]"
        if block.name in names:
            problems.append(f"{where}.name: {block.name!r} is also {names[block.name]}")
        names.setdefault(block.name, where)
        refs = list(block.sensor_refs())
        if not refs:
            problems.append(
                f"{where}: lists no sensors, so every reading it delivers would be refused"
                " (a sensor is accepted only from the driver block that names it,"
                " for mqtt: sensors = [...] or sensor_ids)"
            )
        for path, sensor in refs:
            if sensor not in sensor_ids:
                problems.append(f"{where}.{path}: unknown sensor {sensor!r}")
        for resource in block.resources():
            if resource in holders:
                problems.append(
                    f"{where}: {resource} is already used by {holders[resource]}"
                    " (one driver per exclusive resource)"
                )
            holders.setdefault(resource, where)
    return problems


def _duplicates(items: list[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for item in items:
        if item in seen and item not in dup:
            dup.append(item)
        seen.add(item)
    return dup


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(top level)"


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    """Flatten a pydantic error into (field path, message) pairs, cross-field ones split."""
    out: list[tuple[str, str]] = []
    for err in exc.errors():
        path = _loc_to_path(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see examples/gateway.toml)"
        if err["type"] == "value_error" and "; " in msg and path == "(top level)":
            for part in msg.split("; "):
                sub_path, _, sub_msg = part.partition(": ")
                out.append((sub_path, sub_msg))
            continue
        out.append((path, msg))
    return out


def parse_config(data: dict[str, Any]) -> GatewayConfig:
    """Validate a parsed TOML document."""
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = problems_of(exc)
        msg = f"{len(problems)} problem(s) in config"
        raise ConfigError(msg, problems) from exc


DEFAULT_CONFIG = "/etc/coldchain/gateway.toml"
"""Where ``systemd/install.sh`` puts the config: the default of every command's --config."""
CONFIG_HELP = "the gateway config (TOML; default: %(default)s)"
"""The help text of that --config option (argparse fills in the default)."""


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a config file; every problem is reported with its field path."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        msg = f"cannot read config {p}: {exc.strerror}"
        raise ConfigError(msg, [("(file)", msg)]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        msg = f"{p} is not valid TOML: {exc}"
        raise ConfigError(msg, [("(syntax)", str(exc))]) from exc
    return parse_config(data)
