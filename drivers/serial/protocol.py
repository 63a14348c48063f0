"""The ``$CCR`` serial line protocol of the multi-probe sensor boards.

One sentence per line, ASCII, ending ``\\r\\n`` (see docs/serial-protocol.md)::

    $CCR,<board>,<probe>,<seq>,<device_ts_ms|>,<temp_c>,<rh|>,<battery_v|>*<CRC16>
    $CCS,<board>,<uptime_s>,<fw>*<CRC16>

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final
xor) over the bytes between ``$`` and ``*``, written as four hex digits.

Decoding only checks the wire format and maps the probe to its sensor id; physical
ranges and sensor sentinels (DS18B20 85.0 / -127) are the normaliser's job.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.serial.config import SerialDriverConfig
from gateway.core.model import RawSample, Reject

# Reject reasons: they become counter labels, keep them stable.
REASON_CHECKSUM = "checksum"
REASON_GARBAGE = "garbage"
REASON_BAD_FIELD = "bad_field"
REASON_WRONG_BOARD = "wrong_board"
REASON_UNKNOWN_PROBE = "unknown_probe"
REASON_LINE_TOO_LONG = "line_too_long"
REJECT_REASONS = (
    REASON_CHECKSUM,
    REASON_GARBAGE,
    REASON_BAD_FIELD,
    REASON_WRONG_BOARD,
    REASON_UNKNOWN_PROBE,
    REASON_LINE_TOO_LONG,
)

READING_TAG = b"CCR"
STATUS_TAG = b"CCS"
DEFAULT_MAX_LINE_BYTES = 256

_NS_PER_MS = 1_000_000
# Frame: '$' body '*' 4 hex digits. The body is printable ASCII without '$' and '*'.
_FRAME = re.compile(rb"\$([\x20-\x23\x25-\x29\x2b-\x7e]*)\*([0-9A-Fa-f]{4})")
# Plain decimal notation only: no exponent, no 'nan'/'inf', no '_' separators.
_DECIMAL = re.compile(rb"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_ID = re.compile(rb"[A-Za-z0-9_.-]+")
_READING_FIELDS = 8
_STATUS_FIELDS = 4


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (poly 0x1021, init 0xFFFF); ``b"123456789"`` -> 0x29B1."""
    # binascii.crc_hqx is the same non-reflected 0x1021 CRC, in C; the init is ours.
    return binascii.crc_hqx(data, 0xFFFF)


def frame(body: bytes) -> bytes:
    """Wrap a sentence body as ``$body*CRC\\r\\n``."""
    return b"$" + body + b"*" + f"{crc16_ccitt(body):04X}".encode("ascii") + b"\r\n"


def _fmt_opt(value: float | None, decimals: int) -> str:
    if value is None:
        return ""
    if not math.isfinite(value):
        msg = f"not a finite number: {value!r}"
        raise ValueError(msg)
    return f"{value:.{decimals}f}"


def encode_reading(
    board: str,
    probe: str,
    seq: int,
    temp_c: float,
    *,
    device_ts_ms: int | None = None,
    rh: float | None = None,
    battery_v: float | None = None,
) -> bytes:
    """One ``$CCR`` reading line, framed with its CRC and ``\\r\\n``."""
    if seq < 0 or (device_ts_ms is not None and device_ts_ms < 0):
        msg = "seq and device_ts_ms must be non-negative"
        raise ValueError(msg)
    ts = "" if device_ts_ms is None else str(device_ts_ms)
    body = ",".join(
        (
            "CCR",
            board,
            probe,
            str(seq),
            ts,
            _fmt_opt(temp_c, 2),
            _fmt_opt(rh, 1),
            _fmt_opt(battery_v, 2),
        )
    )
    return frame(body.encode("ascii"))


def encode_status(board: str, uptime_s: int, fw: str) -> bytes:
    """One ``$CCS`` board status line, framed with its CRC and ``\\r\\n``."""
    return frame(f"CCS,{board},{uptime_s},{fw}".encode("ascii"))


@dataclass(slots=True, frozen=True)
class StatusLine:
    """A decoded ``$CCS`` board status sentence (the driver counts and drops it)."""

    board: str
    uptime_s: int
    fw: str


class _BadField(Exception):
    """Internal: one field does not parse."""


def _decimal(raw: bytes, name: str) -> float:
    if _DECIMAL.fullmatch(raw) is None:
        raise _BadField(name)
    value = float(raw)
    if not math.isfinite(value):  # e.g. 400 digits overflow to inf
        raise _BadField(name)
    return value


def _optional_decimal(raw: bytes, name: str) -> float | None:
    return None if raw == b"" else _decimal(raw, name)


def _unsigned(raw: bytes, name: str) -> int:
    if not raw.isdigit():  # bytes.isdigit is ASCII-only
        raise _BadField(name)
    return int(raw)


class LineDecoder:
    """Decodes lines of one board into RawSample / Reject, mapping probes to sensor ids."""

    def __init__(
        self,
        probes: Mapping[str, str],
        source: str,
        board: str | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.probes = dict(probes)
        self.source = source
        self.board = board
        self.max_line_bytes = max_line_bytes
        self.last_status: StatusLine | None = None

    @classmethod
    def from_config(cls, config: SerialDriverConfig, source: str | None = None) -> LineDecoder:
        """A decoder for the board and probes of one ``[[drivers.serial]]`` block."""
        return cls(
            probes=config.probes,
            source=f"serial:{config.name}" if source is None else source,
            board=config.board,
            max_line_bytes=config.max_line_bytes,
        )

    def reject(self, reason: str, line: bytes, detail: str = "") -> Reject:
        """A counted and dead-lettered reject carrying the raw line (at most max_line_bytes).

        Kept like an MQTT payload that could not be read, so ``coldchain dead-letters``
        shows what arrived: a wrong baud rate, parity or board is recognisable there.
        """
        return Reject(
            reason=reason,
            source=self.source,
            raw=bytes(line[: self.max_line_bytes]),
            detail=detail,
            dead_letter=True,
        )

    def decode_line(self, line: bytes, received_ns: int) -> RawSample | Reject | None:
        """Decode one line (with or without its line ending); None for a status line."""
        if len(line) > self.max_line_bytes:
            return self.reject(REASON_LINE_TOO_LONG, line, f"{len(line)} bytes")
        match = _FRAME.fullmatch(line.strip(b"\r\n"))
        if match is None:
            return self.reject(REASON_GARBAGE, line)
        body, crc_hex = match.group(1), match.group(2)
        expected = crc16_ccitt(body)
        if int(crc_hex, 16) != expected:
            return self.reject(
                REASON_CHECKSUM, line, f"got {crc_hex.decode('ascii')} want {expected:04X}"
            )
        fields = body.split(b",")
        try:
            return self._sentence(fields, line, received_ns)
        except _BadField as exc:
            return self.reject(REASON_BAD_FIELD, line, str(exc))

    def _sentence(
        self, fields: list[bytes], line: bytes, received_ns: int
    ) -> RawSample | Reject | None:
        tag = fields[0]
        if tag == READING_TAG:
            return self._reading(fields, line, received_ns)
        if tag == STATUS_TAG:
            return self._status(fields, line)
        return self.reject(REASON_GARBAGE, line, "unknown sentence")

    def _check_board(self, board: bytes, line: bytes) -> Reject | None:
        if _ID.fullmatch(board) is None:
            raise _BadField("board")
        if self.board is not None and board.decode("ascii") != self.board:
            return self.reject(REASON_WRONG_BOARD, line, board.decode("ascii"))
        return None

    def _reading(self, fields: list[bytes], line: bytes, received_ns: int) -> RawSample | Reject:
        if len(fields) != _READING_FIELDS:
            raise _BadField(f"{len(fields)} fields, want {_READING_FIELDS}")
        _, board, probe, seq, ts_ms, temp, rh, battery = fields
        wrong_board = self._check_board(board, line)
        if wrong_board is not None:
            return wrong_board
        sensor = self.probes.get(probe.decode("ascii"))
        if sensor is None:
            if _ID.fullmatch(probe) is None:
                raise _BadField("probe")
            return self.reject(REASON_UNKNOWN_PROBE, line, probe.decode("ascii"))
        ts_ns = None if ts_ms == b"" else _unsigned(ts_ms, "device_ts_ms") * _NS_PER_MS
        return RawSample(
            sensor=sensor,
            temp_c=_decimal(temp, "temp_c"),
            ts_ns=ts_ns,
            received_ns=received_ns,
            source=self.source,
            rh=_optional_decimal(rh, "rh"),
            battery_v=_optional_decimal(battery, "battery_v"),
            seq=_unsigned(seq, "seq"),
        )

    def _status(self, fields: list[bytes], line: bytes) -> Reject | None:
        if len(fields) != _STATUS_FIELDS:
            raise _BadField(f"{len(fields)} fields, want {_STATUS_FIELDS}")
        _, board, uptime, fw = fields
        wrong_board = self._check_board(board, line)
        if wrong_board is not None:
            return wrong_board
        self.last_status = StatusLine(
            board=board.decode("ascii"),
            uptime_s=_unsigned(uptime, "uptime_s"),
            fw=fw.decode("ascii"),
        )
        return None


def decode_line(
    line: bytes,
    received_ns: int,
    source: str,
    *,
    probes: Mapping[str, str],
    board: str | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> RawSample | Reject | None:
    """Decode one line without keeping a decoder (convenience for tools and tests)."""
    decoder = LineDecoder(probes, source, board=board, max_line_bytes=max_line_bytes)
    return decoder.decode_line(line, received_ns)
