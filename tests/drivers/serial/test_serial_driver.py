"""SerialDriver and its line splitter, without a tty (the pty tests are next door)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial.config import SerialDriverConfig
from drivers.serial.driver import LineSplitter, SerialDriver, SerialStats
from drivers.serial.protocol import REJECT_REASONS, LineDecoder, encode_reading, encode_status
from gateway.core.clock import ManualClock
from gateway.core.errors import DriverDisconnected
from gateway.core.model import Delivery

CONFIG = SerialDriverConfig(
    name="b1", port="/dev/ttySIM", board="B1", probes={"1": "cr1-a", "2": "cr1-b"}
)


def splitter(max_samples: int = 500) -> tuple[LineSplitter, SerialStats]:
    stats = SerialStats()
    return LineSplitter(LineDecoder.from_config(CONFIG), stats, max_samples), stats


def feed_all(split: LineSplitter, *chunks: bytes) -> list[Delivery]:
    out: list[Delivery] = []
    for chunk in chunks:
        out.extend(split.feed(chunk, 1))
    return out


def line(seq: int, probe: str = "1") -> bytes:
    return encode_reading("B1", probe, seq, 4.0, device_ts_ms=1000 + seq)


def test_first_partial_line_after_open_is_discarded() -> None:
    split, stats = splitter()
    out = feed_all(split, b"4.0,,*1234\r\n" + line(1), line(2))
    assert [s.seq for d in out for s in d.samples] == [1, 2]
    assert not any(d.rejects for d in out)
    assert stats.partial_lines_discarded == 1


def test_stream_starting_at_a_sentence_keeps_its_first_line() -> None:
    split, stats = splitter()
    out = feed_all(split, line(1)[:5], line(1)[5:] + line(2))
    assert [s.seq for d in out for s in d.samples] == [1, 2]
    assert stats.partial_lines_discarded == 0


def test_lines_split_across_chunks_byte_by_byte() -> None:
    split, _ = splitter()
    data = b"".join(line(i) for i in range(1, 6))
    out = feed_all(split, *(data[i : i + 1] for i in range(len(data))))
    assert [s.seq for d in out for s in d.samples] == [1, 2, 3, 4, 5]


def test_overlong_line_without_newline_is_one_reject_and_resyncs() -> None:
    split, stats = splitter()
    junk = b"$" + b"A" * 999
    chunks = [line(1)] + [junk[i : i + 64] for i in range(0, len(junk), 64)]
    out = feed_all(split, *chunks, b"AAAA\r\n" + line(2))
    reasons = [r.reason for d in out for r in d.rejects]
    assert reasons == ["line_too_long"]
    assert [s.seq for d in out for s in d.samples] == [1, 2]
    assert stats.rejects["line_too_long"] == 1
    assert all(len(r.raw) <= CONFIG.max_line_bytes for d in out for r in d.rejects)


def test_buffered_lines_are_batched_up_to_500_samples() -> None:
    split, stats = splitter()
    data = b"".join(line(i) for i in range(1, 1201))
    out = feed_all(split, data)
    assert [len(d.samples) for d in out] == [500, 500, 200]
    assert stats.samples == 1200


def test_status_and_rejects_are_counted() -> None:
    split, stats = splitter()
    out = feed_all(
        split,
        line(1) + encode_status("B1", 5, "1.0") + b"garbage\r\n" + line(2, probe="7"),
    )
    assert stats.status_lines == 1
    assert stats.rejects == {"garbage": 1, "unknown_probe": 1}
    assert [r.reason for d in out for r in d.rejects] == ["garbage", "unknown_probe"]
    assert all(r.dead_letter for d in out for r in d.rejects)
    assert next(r.raw for d in out for r in d.rejects) == b"garbage\r\n", "raw bytes kept"


OpenPort = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@pytest.fixture
async def socket_port() -> AsyncIterator[tuple[OpenPort, socket.socket, list[dict[str, Any]]]]:
    """An injected port factory backed by a real socketpair; the test writes the far end."""
    near, far = socket.socketpair()
    calls: list[dict[str, Any]] = []

    async def open_port(**kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        calls.append(kwargs)
        return await asyncio.open_connection(sock=near)

    yield open_port, far, calls
    far.close()
    near.close()


async def test_parity_and_byte_size_reach_the_port_factory(
    socket_port: tuple[OpenPort, socket.socket, list[dict[str, Any]]],
) -> None:
    open_port, far, calls = socket_port
    config = CONFIG.model_copy(update={"parity": "E", "bytesize": 7, "stopbits": 2})
    driver = SerialDriver(config, ManualClock(), open_port=open_port)
    far.shutdown(socket.SHUT_WR)
    with pytest.raises(DriverDisconnected):
        async with asyncio.timeout(4):
            async for _ in driver.deliveries():
                pass
    assert calls == [
        {"url": "/dev/ttySIM", "baudrate": 115200, "bytesize": 7, "parity": "E", "stopbits": 2}
    ]


async def test_driver_yields_deliveries_and_raises_on_eof(
    socket_port: tuple[OpenPort, socket.socket, list[dict[str, Any]]],
) -> None:
    open_port, far, calls = socket_port
    clock = ManualClock()
    driver = SerialDriver(CONFIG, clock, open_port=open_port)
    assert driver.name == "b1"
    far.sendall(line(1) + line(2, "2") + b"noise\r\n")
    far.shutdown(socket.SHUT_WR)
    got: list[Delivery] = []
    with pytest.raises(DriverDisconnected, match="EOF"):
        async with asyncio.timeout(4):
            async for delivery in driver.deliveries():
                got.append(delivery)
    assert calls == [
        {"url": "/dev/ttySIM", "baudrate": 115200, "bytesize": 8, "parity": "N", "stopbits": 1}
    ]
    samples = [s for d in got for s in d.samples]
    assert [(s.sensor, s.seq, s.received_ns) for s in samples] == [
        ("cr1-a", 1, clock.now_ns()),
        ("cr1-b", 2, clock.now_ns()),
    ]
    assert [r.reason for d in got for r in d.rejects] == ["garbage"]
    assert driver.stats()["disconnects"] == 1
    assert not driver.connected.is_set()


async def test_open_failure_is_driver_disconnected() -> None:
    async def failing_open(**kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise OSError(2, "No such file or directory")

    driver = SerialDriver(CONFIG, ManualClock(), open_port=failing_open)
    with pytest.raises(DriverDisconnected) as info:
        async for _ in driver.deliveries():
            pass
    assert isinstance(info.value.__cause__, OSError)


async def test_real_pyserial_on_missing_port_is_driver_disconnected(tmp_path: Path) -> None:
    config = CONFIG.model_copy(update={"port": str(tmp_path / "ttyGONE")})
    driver = SerialDriver(config, ManualClock())
    with pytest.raises(DriverDisconnected, match="cannot open") as info:
        async for _ in driver.deliveries():
            pass
    assert info.value.__cause__ is not None
    await driver.close()  # idempotent, nothing open


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=400),
            st.sampled_from([line(1), line(2, "2"), b"\r\n", b"\n", b"$", b"\x00" * 300]),
        ),
        max_size=20,
    )
)
def test_splitter_survives_any_byte_stream(chunks: list[bytes]) -> None:
    split, stats = splitter(max_samples=3)
    for delivery in feed_all(split, *chunks):
        assert len(delivery.samples) <= 3
        assert all(r.reason in REJECT_REASONS for r in delivery.rejects)
        assert all(len(r.raw) <= CONFIG.max_line_bytes for r in delivery.rejects)
    # Memory stays bounded whatever the stream: at most one line is held.
    assert len(split._buf) <= CONFIG.max_line_bytes
    assert stats.samples + sum(stats.rejects.values()) + stats.status_lines <= stats.lines


def test_readme_config_block_is_a_valid_config() -> None:
    import re
    import tomllib

    readme = (Path(__file__).parents[3] / "drivers" / "serial" / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert block is not None
    tables = tomllib.loads(block.group(1))["drivers"]["serial"]
    config = SerialDriverConfig(**tables[0])
    assert config.probes["1"] == "cr1-a"
