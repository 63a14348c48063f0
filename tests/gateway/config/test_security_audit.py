"""check-config's security warnings, URL credentials refused, inline secrets hidden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import parse_config
from gateway.config.audit import is_loopback, security_warnings
from gateway.core.errors import ConfigError
from gateway.core.secrets import SecretRef


def _config(**sections: Any) -> Any:
    doc: dict[str, Any] = {
        "hub": {"id": "h"},
        "zones": [{"id": "z", "kind": "dock"}],
        "sensors": [{"id": "s1", "zone": "z"}],
    }
    doc.update(sections)
    return parse_config(doc)


def _mqtt(**fields: Any) -> dict[str, Any]:
    block = {
        "name": "nodes",
        "sensors": ["s1"],
        "subscriptions": [
            {"topic": "sensors/+/telemetry", "sensor_path": "id", "device_topic_segment": 1}
        ],
    }
    return {"mqtt": [block | fields]}


def test_the_shipped_shape_has_no_warning_but_unsigned_commands() -> None:
    config = _config(drivers=_mqtt(password={"env": "P"}), sinks={"planner": {}})
    assert [w.split(":")[0] for w in security_warnings(config)] == ["commands.require_signatures"]
    signed = _config(drivers=_mqtt(), commands={"require_signatures": True})
    assert security_warnings(signed) == []


def test_clear_text_credentials_to_another_host_and_verification_off_are_warned() -> None:
    config = _config(
        drivers=_mqtt(host="broker.hub.lan", password={"env": "P"}),
        sinks={
            "influx": {"url": "http://influx.example:8086", "token": {"env": "T"}},
            "planner": {"host": "central", "tls": {"enabled": True, "verify": False}},
        },
        commands={"require_signatures": True},
    )
    text = "\n".join(security_warnings(config))
    assert "MQTT password is sent in clear text to broker.hub.lan" in text
    assert "credentials are sent in clear text to influx.example" in text
    assert "sinks.planner.tls.verify: false" in text


def test_a_payload_id_not_bound_to_the_topic_and_inline_secrets_are_warned() -> None:
    unbound = {"subscriptions": [{"topic": "t/#", "sensor_path": "id"}]}
    config = _config(
        drivers=_mqtt(password={"value": "hunter2"}, **unbound),
        commands={"require_signatures": True},
    )
    text = "\n".join(security_warnings(config))
    assert "not checked against the topic" in text
    assert "drivers.mqtt[0].password: the secret is inline" in text
    assert "hunter2" not in repr(config)


def test_url_credentials_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        _config(sinks={"influx": {"url": "http://gw:s3cret@influx:8086"}})
    assert "user:password@" in str(info.value.problems)
    assert "s3cret" not in str(info.value.problems)


def test_an_inline_secret_never_shows_in_repr_or_str() -> None:
    ref = SecretRef.model_validate({"value": "hunter2"})
    assert "hunter2" not in repr(ref) and "hunter2" not in str(ref)
    assert ref.resolve() == "hunter2"


def test_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["10.0.0.2", "broker.lan", "0.0.0.0"]))


def test_check_config_prints_the_warnings_and_still_says_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        '[hub]\nid = "h"\n[sinks.influx]\nurl = "http://10.0.0.9:8086"\ntoken = { env = "T" }\n'
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert ": OK" in out
    assert (
        "security warning: sinks.influx.url: credentials are sent in clear text to 10.0.0.9" in out
    )
