"""Sparkplug B payloads written with a protobuf wire encoder of the tests' own.

Independent of drivers/mqtt/formats/_sparkplug_pb.py on purpose: a wrong field number
or wire type in the decoder's schema makes these bytes decode wrongly and the tests
fail. Field numbers and types are those of the Sparkplug 3.0 specification's ``Payload``
and ``Metric`` messages (eclipse-tahu ``sparkplug_b/sparkplug_b.proto``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

# Sparkplug B DataType values.
INT16, INT32, INT64, UINT32, FLOAT, DOUBLE, BOOLEAN, STRING = 2, 3, 4, 7, 9, 10, 11, 12


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _text(field: int, value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return _key(field, 2) + _varint(len(raw)) + raw


def metric(
    name: str | None = None,
    *,
    alias: int | None = None,
    timestamp: int | None = None,
    datatype: int | None = None,
    is_null: bool = False,
    float_value: float | None = None,
    double_value: float | None = None,
    int_value: int | None = None,
    long_value: int | None = None,
    boolean_value: bool | None = None,
    string_value: str | None = None,
) -> bytes:
    """One Metric message."""
    out = b""
    if name is not None:
        out += _text(1, name)
    if alias is not None:
        out += _key(2, 0) + _varint(alias)
    if timestamp is not None:
        out += _key(3, 0) + _varint(timestamp)
    if datatype is not None:
        out += _key(4, 0) + _varint(datatype)
    if is_null:
        out += _key(7, 0) + _varint(1)
    if int_value is not None:
        out += _key(10, 0) + _varint(int_value & 0xFFFFFFFF)
    if long_value is not None:
        out += _key(11, 0) + _varint(long_value)
    if float_value is not None:
        out += _key(12, 5) + struct.pack("<f", float_value)
    if double_value is not None:
        out += _key(13, 1) + struct.pack("<d", double_value)
    if boolean_value is not None:
        out += _key(14, 0) + _varint(int(boolean_value))
    if string_value is not None:
        out += _text(15, string_value)
    return out


def payload(
    metrics: Iterable[bytes] = (), *, timestamp: int | None = None, seq: int | None = None
) -> bytes:
    """One Payload message."""
    out = b""
    if timestamp is not None:
        out += _key(1, 0) + _varint(timestamp)
    for m in metrics:
        out += _text(2, m)
    if seq is not None:
        out += _key(3, 0) + _varint(seq)
    return out


# The specification's example edge node: NBIRTH with bdSeq and Node Control/Rebirth.
T_MS = 1_767_225_600_000


def nbirth(seq: int = 0, bd_seq: int = 0, at_ms: int = T_MS) -> bytes:
    return payload(
        [
            metric("bdSeq", alias=0, datatype=INT64, long_value=bd_seq, timestamp=at_ms),
            metric("Node Control/Rebirth", alias=1, datatype=BOOLEAN, boolean_value=False),
            metric("Cabinet Temperature", alias=2, datatype=DOUBLE, double_value=21.25),
        ],
        timestamp=at_ms,
        seq=seq,
    )
