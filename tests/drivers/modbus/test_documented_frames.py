"""The driver against the frames an SHT20 (XY-MD02) transmitter's documentation prints.

A raw responder on one end of a socat pty pair answers exactly the documented request
with exactly the documented answer, byte for byte; the driver on the other end must send
that request for the ``xy_md02`` map and read the answer as the manual says.

Frames from https://github.com/e-tinkers/Modbus-RTU/blob/master/examples/SHT20/README.md
("Read both Temperature and Humidity values"), checked there against a real sensor:
request ``01 04 00 01 00 02 20 0B``, answer ``01 04 04 01 31 02 22 2A CE`` (30.5 °C, 54.6 %).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from drivers.modbus.config import ModbusDriverConfig
from drivers.modbus.driver import rtu_crc_ok
from firmware_sim.modbus_bus import PtyPair
from gateway.core.clock import ManualClock

pytestmark = pytest.mark.integration

REQUEST = bytes.fromhex("01 04 00 01 00 02 20 0B")
ANSWER = bytes.fromhex("01 04 04 01 31 02 22 2A CE")


class RawResponder:
    """Reads requests off a tty and answers a known one with fixed bytes."""

    def __init__(self, path: str, answers: dict[bytes, bytes]) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.answers = answers
        self.received: list[bytes] = []
        self._buf = b""
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        self._buf += os.read(self.fd, 256)
        while len(self._buf) >= 8:  # every read request is 8 bytes
            request, self._buf = self._buf[:8], self._buf[8:]
            self.received.append(request)
            answer = self.answers.get(request)
            if answer is not None:
                os.write(self.fd, answer)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


def _config(port: str) -> ModbusDriverConfig:
    return ModbusDriverConfig.model_validate(
        {"name": "doc", "port": port, "timeout_s": 1.0,
         "devices": [{"slave": 1, "probe": "xy_md02", "sensor": "room"}]}
    )  # fmt: skip


@pytest.mark.parametrize("corrupt", [False, True])
async def test_documented_request_and_answer_byte_for_byte(
    pty_pair: PtyPair, collect: Any, corrupt: bool
) -> None:
    answer = ANSWER[:-1] + bytes([ANSWER[-1] ^ 0x01]) if corrupt else ANSWER
    responder = RawResponder(pty_pair.a, {REQUEST: answer})
    try:
        assert rtu_crc_ok(REQUEST) and rtu_crc_ok(ANSWER), "the documented CRCs are right"
        c = collect(_config(pty_pair.b), ManualClock())
        await c.next_idle(0)
        assert responder.received == [REQUEST], "the driver sends the documented request"
        if not corrupt:
            (sample,) = c.samples("room")
            assert (sample.temp_c, sample.rh) == (30.5, 54.6)
            assert c.rejects() == []
        else:
            assert c.samples("room") == []
            (reject,) = c.rejects()
            assert (reject.reason, reject.raw) == ("crc", answer)
    finally:
        responder.close()


async def test_an_answer_from_another_slave_id_is_named(pty_pair: PtyPair, collect: Any) -> None:
    # slave 2 answers a request for slave 1 (two devices set to one id, or a late answer)
    from_slave_2 = bytes.fromhex("02 04 04 01 31 02 22")
    from drivers.modbus.driver import crc16_modbus

    frame = from_slave_2 + crc16_modbus(from_slave_2).to_bytes(2, "little")
    responder = RawResponder(pty_pair.a, {REQUEST: frame})
    try:
        c = collect(_config(pty_pair.b), ManualClock())
        await c.next_idle(0)
        (reject,) = c.rejects()
        assert reject.reason == "bad_frame" and reject.raw == frame
        assert "a frame from slave 2 while waiting for 1" in reject.detail
    finally:
        responder.close()
