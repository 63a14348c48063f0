"""MQTT broker connection settings and TLS, shared by the MQTT driver and the planner feed."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.core.secrets import SecretRef

log = logging.getLogger(__name__)


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails.

    paho-mqtt (2.1, ``Client._ssl_wrap_socket``) wraps the TCP socket and calls
    ``do_handshake()`` without closing the socket when that raises (an unknown CA, a
    wrong host name, a broker that wants a client certificate): every failed attempt of
    the reconnect loop left an open socket behind for the garbage collector, with a
    ResourceWarning.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # a non-blocking handshake in progress, not a failure
        except OSError:
            self.close()
            raise


class TlsConfig(BaseModel):
    """TLS for a client connection. Server verification is on unless turned off loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            msg = "cert_file and key_file go together"
            raise ValueError(msg)
        if not self.enabled and (self.ca_file or self.cert_file):
            # A CA or client certificate with TLS off would silently connect in plaintext.
            msg = "ca_file/cert_file are set but enabled = false: set enabled = true"
            raise ValueError(msg)
        return self

    def context(self, component: str) -> ssl.SSLContext | None:
        """An SSLContext for this config, or None when TLS is off."""
        if not self.enabled:
            return None
        ctx = ssl.create_default_context(
            cafile=os.path.expandvars(self.ca_file) if self.ca_file else None
        )
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(
                Path(os.path.expandvars(self.cert_file)), Path(os.path.expandvars(self.key_file))
            )
        if not self.verify:
            log.warning(
                "TLS SERVER VERIFICATION IS OFF for %s: the connection is encrypted but the "
                "server is not authenticated; anyone on the path can impersonate it",
                component,
            )
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.sslsocket_class = _ClosingSSLSocket
        return ctx


class MqttConnectionConfig(BaseModel):
    """Where a broker is and how to log in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = None
    username: str | None = None
    password: SecretRef | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    tls: TlsConfig = TlsConfig()


SESSION_TAKEN_OVER = 142
"""MQTT 5 DISCONNECT reason code: another client connected with our client id."""
NEVER_EXPIRES = 0xFFFFFFFF
"""MQTT 5 session expiry interval: the broker keeps the session until it is resumed."""


def persistent_session_kwargs(
    config: MqttConnectionConfig,
    identifier: str,
    tls: ssl.SSLContext | None,
    *,
    mqtt5: bool = False,
) -> dict[str, Any]:
    """aiomqtt.Client arguments for a fixed-id, persistent-session (QoS 1) connection.

    Both the ingest driver and the planner feed connect this way, so the broker keeps
    QoS 1 messages while the gateway restarts: MQTT 3.1.1 with clean_session off, or
    (``mqtt5``, the planner feed) MQTT 5 with clean start off and a session that never
    expires. MQTT 5 is what lets the feed tell a session takeover (the broker's DISCONNECT
    with reason 142) from a network drop: 3.1.1 brokers just close the socket.
    The password is resolved on every connect, so a rotated credential is picked up.
    """
    import aiomqtt

    if mqtt5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = NEVER_EXPIRES
        session: dict[str, Any] = {
            "protocol": aiomqtt.ProtocolVersion.V5,
            "clean_start": False,
            "properties": properties,
        }
    else:
        session = {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": False}
    return {
        "hostname": config.host,
        "port": config.port,
        "identifier": identifier,
        **session,
        "keepalive": config.keepalive_s,
        "username": config.username,
        "password": config.password.resolve() if config.password is not None else None,
        "tls_context": tls,
    }


def taken_over(exc: BaseException) -> bool:
    """True when an aiomqtt error is the broker's "session taken over" DISCONNECT."""
    rc = getattr(exc, "rc", None)
    value = getattr(rc, "value", rc)
    return value == SESSION_TAKEN_OVER
