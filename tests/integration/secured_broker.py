"""A private Mosquitto running the shipped reference set-up (systemd/mosquitto/).

The broker gets the reference ``coldchain.conf`` options (anonymous off, password file,
ACL file, ``use_username_as_clientid``) with the paths pointed into the test's directory,
the reference ACL as shipped, and a password file made by ``mosquitto_passwd`` for the
given users. Its listener is the test's free loopback port, not the reference 1883.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.apps.localservices import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "systemd" / "mosquitto"


def reference_options(password_file: Path, acl_file: Path) -> list[str]:
    """The reference conf's option lines, paths replaced; its listeners left out."""
    lines = []
    for raw in (REFERENCE / "coldchain.conf").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("listener"):
            continue
        key = line.split()[0]
        if key == "password_file":
            line = f"password_file {password_file}"
        elif key == "acl_file":
            line = f"acl_file {acl_file}"
        lines.append(line)
    return lines


@dataclass
class SecuredBroker:
    """The running broker and the passwords of its users."""

    broker: Mosquitto
    passwords: dict[str, str] = field(repr=False)

    @property
    def port(self) -> int:
        """The loopback port."""
        return self.broker.port

    @property
    def log(self) -> str:
        """The broker's log so far."""
        return self.broker.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def secured_broker(workdir: Path, users: list[str]) -> Iterator[SecuredBroker]:
    """Start Mosquitto with the reference conf and ACL; one random password per user."""
    workdir.mkdir(parents=True, exist_ok=True)
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    password_file = workdir / "coldchain.passwd"
    passwords = {user: uuid.uuid4().hex for user in users}
    for user, password in passwords.items():
        flags = ["-b"] if password_file.exists() else ["-c", "-b"]
        subprocess.run(
            [passwd, *flags, str(password_file), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
    acl_file = workdir / "coldchain.acl"
    shutil.copy(REFERENCE / "coldchain.acl", acl_file)
    extra = "\n".join(reference_options(password_file, acl_file))
    with Mosquitto(workdir / "broker", extra_config=extra) as broker:
        yield SecuredBroker(broker, passwords)


class Client:
    """A blocking paho client for attack and device roles (QoS 1, waits for PUBACK)."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        client_id: str | None = None,
    ) -> None:
        self.mqtt = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{uuid.uuid4().hex[:8]}"
        )
        if username is not None:
            self.mqtt.username_pw_set(username, password)
        self.port = port
        self.connack: int | None = None
        self.disconnect_reason: int | None = None
        self._connected = threading.Event()
        self.messages: list[paho.MQTTMessage] = []
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_message = lambda _c, _u, m: self.messages.append(m)

    def _on_connect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.connack = int(getattr(rc, "value", rc))  # type: ignore[call-overload]
        self._connected.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.disconnect_reason = int(getattr(rc, "value", rc))  # type: ignore[call-overload]
        self._connected.set()

    def connect(self, timeout: float = 10.0) -> int:
        """CONNECT and wait for the CONNACK; returns its code (0 accepted, 5 not authorised)."""
        self.mqtt.connect("127.0.0.1", self.port, keepalive=30)
        self.mqtt.loop_start()
        if not self._connected.wait(timeout):
            msg = "no CONNACK"
            raise TimeoutError(msg)
        return -1 if self.connack is None else self.connack

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        """QoS 1 publish; returns after the broker's PUBACK."""
        info = self.mqtt.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            msg = f"no PUBACK for {topic}"
            raise TimeoutError(msg)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.mqtt.disconnect()
        self.mqtt.loop_stop()
        # loop_start() opened a socket pair that loop_stop() leaves open (paho 2.1).
        self.mqtt._reset_sockets()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
