"""Security warnings about a valid config: what would let someone fake or read the record.

``coldchain check-config`` prints them (and still says OK: each is a choice a hub may
make on purpose), the daemon logs each at ERROR level at start so no log level hides
it, and ``status.json`` lists them under ``security_warnings``. docs/security.md says
what each one means and how to fix it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config import GatewayConfig
from gateway.core.tls import MqttConnectionConfig


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (what never leaves the box)."""
    name = host.strip("[]").lower()
    if name in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    return name.endswith(".localhost")


def security_warnings(config: GatewayConfig) -> list[str]:
    """Every warning for this config, as ``where: what, and the fix`` lines."""
    return list(_warnings(config))


def _warnings(config: GatewayConfig) -> Iterator[str]:
    for kind, i, block in config.drivers.blocks():
        where = f"drivers.{kind}[{i}]"
        if isinstance(block, MqttConnectionConfig):
            yield from _mqtt(where, block)
        for j, mapping in enumerate(getattr(block, "subscriptions", ())):
            if getattr(mapping, "sensor_path", None) and mapping.device_topic_segment is None:
                yield (
                    f"{where}.subscriptions[{j}]: sensor ids come from the payload and are not"
                    " checked against the topic: any client allowed to publish on"
                    f" {mapping.topic!r} can report for every sensor this block lists"
                    " (set device_topic_segment)"
                )
    planner = config.sinks.planner
    if planner is not None:
        yield from _mqtt("sinks.planner", planner)
    influx = config.sinks.influx
    if influx is not None:
        parts = urlsplit(influx.url)
        host = parts.hostname or ""
        has_credentials = influx.token is not None or influx.password is not None
        if parts.scheme == "http" and has_credentials and not is_loopback(host):
            yield (f"sinks.influx.url: credentials are sent in clear text to {host} (use https://)")
        if parts.scheme == "https" and not influx.verify_tls:
            yield (
                "sinks.influx.verify_tls: false: the server is not authenticated; anyone on"
                " the path can read the token and rewrite what is stored"
            )
    for name in _inline_secrets(config):
        yield (
            f"{name}: the secret is inline in the config file (use env or file, e.g."
            ' { file = "${CREDENTIALS_DIRECTORY}/..." })'
        )
    commands = getattr(config, "commands", None)
    if commands is not None and not commands.require_signatures and planner is not None:
        yield (
            "commands.require_signatures: false: cmd/custody and cmd/ack are accepted"
            " unsigned; anyone the broker lets publish there writes the custody record"
        )


def _mqtt(where: str, block: MqttConnectionConfig) -> Iterator[str]:
    if not block.tls.enabled and not is_loopback(block.host):
        if block.password is not None:
            yield (
                f"{where}: the MQTT password is sent in clear text to {block.host}"
                " (tls.enabled = true, docs/tls.md)"
            )
        else:
            yield f"{where}: MQTT to {block.host} without TLS: readings and commands in clear"
    if block.tls.enabled and not block.tls.verify:
        yield (
            f"{where}.tls.verify: false: the broker is not authenticated; anyone on the"
            " path can impersonate it"
        )


def _inline_secrets(config: GatewayConfig) -> Iterator[str]:
    for kind, i, block in config.drivers.blocks():
        secret = getattr(block, "password", None)
        if secret is not None and secret.value is not None:
            yield f"drivers.{kind}[{i}].password"
    planner = config.sinks.planner
    if planner is not None and planner.password is not None and planner.password.value:
        yield "sinks.planner.password"
    influx = config.sinks.influx
    if influx is not None:
        for name in ("token", "password"):
            secret = getattr(influx, name)
            if secret is not None and secret.value is not None:
                yield f"sinks.influx.{name}"


def peer_hosts(config: GatewayConfig) -> list[str]:
    """Every network host the daemon talks to: brokers, InfluxDB, network drivers."""
    hosts: list[str] = []
    for _, _, block in config.drivers.blocks():
        host = getattr(block, "host", None)
        if isinstance(host, str) and host:
            hosts.append(host)
    if config.sinks.planner is not None:
        hosts.append(config.sinks.planner.host)
    if config.sinks.influx is not None:
        hosts.append(urlsplit(config.sinks.influx.url).hostname or "")
    return sorted({h.strip("[]") for h in hosts if h})


def ip_allow_dropin(config: GatewayConfig, resolv_conf: Path = Path("/etc/resolv.conf")) -> str:
    """A systemd drop-in that lets the unit reach its peers only (IPAddressDeny=any).

    Written by systemd/install.sh from the config (``coldchain check-config FILE
    --ip-allow``). Host names are resolved now; when there are any, the resolvers of
    resolv.conf are allowed too. Re-run the installer after changing a host.
    """
    allowed: set[str] = {"localhost"}
    named = False
    for host in peer_hosts(config):
        try:
            allowed.add(str(ipaddress.ip_address(host)))
            continue
        except ValueError:
            named = True
        try:
            for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP):
                allowed.add(str(info[4][0]))
        except OSError:
            pass  # unresolvable now: check-config already names the host
    if named:
        try:
            for line in resolv_conf.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    allowed.add(parts[1])
        except OSError:
            pass
    lines = [
        "# Written by systemd/install.sh from the gateway config: the peers it may reach.",
        "[Service]",
        "IPAddressDeny=any",
        *(f"IPAddressAllow={address}" for address in sorted(allowed)),
    ]
    return "\n".join(lines) + "\n"
