"""Sparkplug B: ``spBv1.0/<group>/<NBIRTH|DBIRTH|NDATA|DDATA|NDEATH|DDEATH>/<edge>[/<device>]``.

Layout (Eclipse Sparkplug 3.0): protobuf payloads (see _sparkplug_pb.py). A birth
certificate (NBIRTH for the edge node, DBIRTH for each device behind it) lists every
metric with its name, datatype and usually an **alias**; data messages (NDATA, DDATA)
then name metrics by alias only. So the decoder keeps, per connection, an alias table
per node and device, filled by births, replaced by a rebirth (a new NBIRTH drops the
node's devices too: they are born again after it), dropped by NDEATH / DDEATH.

- Every metric whose name matches ``temp_key`` (an fnmatch pattern, case-insensitive,
  default ``*temperature*``) is one reading; the device id is
  ``<group>/<edge>/<device>/<metric name>`` (``<group>/<edge>/<metric name>`` for node
  metrics). Birth certificates carry current values and are read too.
- Data for an alias no birth on this connection defined is a dead letter
  ``unknown_alias`` (the gateway cannot know what it measures; the edge node's next
  rebirth, or a rebirth request from the SCADA host, fixes it).
- ``seq`` (0..255 per edge node, across its node and device messages) is checked; a jump
  is counted ``seq_gap`` (messages lost upstream); the data is still read.
- Values by datatype: Float (float32, stored as its shortest decimal), Double, signed and
  unsigned integers; ``is_null`` is ``no_value``; a temperature metric of another type
  is ``bad_type``. Times are the metric's ``timestamp`` (ms, UTC), else the payload's.
- STATE, NCMD and DCMD messages are ``ignored``.

Not read: metric properties (an engineering-unit property is not standardised: set
``temp_unit``), data sets and templates.
"""

from __future__ import annotations

import fnmatch
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from drivers.mqtt.formats import Decoded, FormatSpec, reject
from drivers.mqtt.formats._common import (
    IGNORED,
    NO_TEMPERATURE,
    NO_VALUE,
    SEQ_GAP,
    UNKNOWN_ALIAS,
    FormatDecoder,
    Invalid,
    counted,
    sample,
)
from drivers.mqtt.payload import BAD_TYPE, MISSING_FIELD, NON_FINITE, TOO_LARGE
from gateway.core.model import RawSample, Reject

if TYPE_CHECKING:
    from drivers.mqtt.config import TopicMapping

NOT_PROTOBUF: Final = "not_protobuf"
NAMESPACE: Final = "spBv1.0"
_BIRTHS: Final = ("NBIRTH", "DBIRTH")
_DATA: Final = ("NDATA", "DDATA")
_DEATHS: Final = ("NDEATH", "DDEATH")

_Alias = tuple[str, int]  # metric name, datatype


@dataclass(slots=True)
class _Node:
    """What this connection knows of one edge node: its seq and alias tables."""

    seq: int | None = None
    aliases: dict[int, _Alias] = field(default_factory=dict)
    devices: dict[str, dict[int, _Alias]] = field(default_factory=dict)


def float32(value: float) -> float:
    """The shortest decimal that is the same float32 (4.1 rather than 4.099999904632568)."""
    packed = struct.pack("<f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


class SparkplugDecoder(FormatDecoder):
    def __init__(
        self, mapping: TopicMapping, sensor_ids: Mapping[str, str], max_payload_bytes: int
    ) -> None:
        super().__init__(mapping, sensor_ids, max_payload_bytes)
        from drivers.mqtt.formats import _sparkplug_pb  # protobuf loads only when used

        self._payload_class: Any = _sparkplug_pb.Payload
        self._pb = _sparkplug_pb
        self._pattern = (mapping.temp_key or "*temperature*").lower()
        self._nodes: dict[tuple[str, str], _Node] = {}  # per connection: see FormatSpec

    def _decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        levels = topic.split("/")
        if (
            len(levels) < 4
            or levels[0] != NAMESPACE
            or levels[2] not in (*_BIRTHS, *_DATA, *_DEATHS)
        ):
            return Decoded(
                (), (counted(IGNORED, "not a birth, data or death message", topic, source),)
            )
        group, kind, edge = levels[1], levels[2], levels[3]
        device = "/".join(levels[4:]) if kind[0] == "D" else ""
        if kind[0] == "D" and not device:
            raise Invalid(MISSING_FIELD, f"{kind} topic has no device id")
        if len(payload) > self._max:
            raise Invalid(TOO_LARGE, f"{len(payload)} bytes, limit {self._max} (raw truncated)")
        try:
            message = self._payload_class.FromString(payload)
        except Exception as exc:  # protobuf's DecodeError; its module path varies by backend
            raise Invalid(NOT_PROTOBUF, f"not a Sparkplug B payload: {exc}"[:200]) from None
        rejects: list[Reject] = []
        key = (group, edge)
        node = self._nodes.get(key)
        if kind == "NBIRTH":
            node = self._nodes[key] = _Node()  # a rebirth replaces everything
        elif node is None:
            node = self._nodes[key] = _Node()
        self._check_seq(node, message, kind, topic, source, rejects)
        if kind == "NDEATH":
            del self._nodes[key]
            return Decoded((), (*rejects, counted(IGNORED, "node death", topic, source)))
        if kind == "DDEATH":
            node.devices.pop(device, None)
            return Decoded((), (*rejects, counted(IGNORED, "device death", topic, source)))
        if kind == "NBIRTH":
            table = node.aliases
        elif kind == "DBIRTH":
            table = node.devices[device] = {}
        else:
            table = node.aliases if kind == "NDATA" else node.devices.get(device, {})
        prefix = f"{group}/{edge}/{device}/" if device else f"{group}/{edge}/"
        samples: list[RawSample] = []
        unknown: list[int] = []
        default_ts = message.timestamp * 1_000_000 if message.HasField("timestamp") else None
        for metric in message.metrics:
            has_alias = metric.HasField("alias")
            if kind in _BIRTHS and has_alias and metric.name:
                table[metric.alias] = (metric.name, metric.datatype)
            name, datatype = metric.name, metric.datatype
            if has_alias and (not name or not metric.HasField("datatype")):
                known = table.get(metric.alias)
                if known is None:
                    if not name:
                        unknown.append(metric.alias)
                        continue
                else:
                    name = name or known[0]
                    datatype = datatype if metric.HasField("datatype") else known[1]
            if not name or not fnmatch.fnmatchcase(name.lower(), self._pattern):
                continue
            if metric.is_null:
                rejects.append(counted(NO_VALUE, f"{name} is null", topic, source))
                continue
            ts_ns = metric.timestamp * 1_000_000 if metric.HasField("timestamp") else default_ts
            samples.append(
                sample(
                    self.sensor(prefix + name),
                    self.celsius(self._value(metric, datatype, name), name),
                    ts_ns,
                    received_ns,
                    source,
                )
            )
        if unknown:
            shown = ", ".join(str(a) for a in unknown[:10])
            rejects.append(
                reject(
                    UNKNOWN_ALIAS,
                    f"aliases {shown} of {prefix.rstrip('/')} have no birth on this connection",
                    topic,
                    payload,
                    source,
                )
            )
        if not samples and not rejects:
            rejects.append(
                counted(NO_TEMPERATURE, f"no metric matches {self._pattern}", topic, source)
            )
        return Decoded(samples, rejects)

    @staticmethod
    def _check_seq(
        node: _Node, message: Any, kind: str, topic: str, source: str, rejects: list[Reject]
    ) -> None:
        if not message.HasField("seq"):
            return
        seq = message.seq
        if node.seq is not None and kind != "NBIRTH" and seq != (node.seq + 1) % 256:
            detail = f"seq {seq} after {node.seq}: messages lost upstream"
            rejects.append(counted(SEQ_GAP, detail, topic, source))
        node.seq = seq

    def _value(self, metric: Any, datatype: int, name: str) -> float:
        pb = self._pb
        kind = metric.WhichOneof("value")
        if datatype == pb.FLOAT and kind == "float_value":
            return float32(metric.float_value)
        if datatype == pb.DOUBLE and kind == "double_value":
            value: float = metric.double_value
            if not math.isfinite(value):
                raise Invalid(NON_FINITE, f"{name}: {value!r} is not a finite number")
            return value
        if kind == "int_value" and datatype in (pb.INT8, pb.INT16, pb.INT32):
            return float(
                _signed(metric.int_value, {pb.INT8: 8, pb.INT16: 16, pb.INT32: 32}[datatype])
            )
        if kind == "int_value" and datatype in (pb.UINT8, pb.UINT16, pb.UINT32):
            return float(metric.int_value)
        if kind == "long_value" and datatype == pb.INT64:
            return float(_signed(metric.long_value, 64))
        if kind == "long_value" and datatype in (pb.UINT32, pb.UINT64):
            return float(metric.long_value)
        raise Invalid(BAD_TYPE, f"{name}: datatype {datatype} with {kind} is not a number")


FORMAT = FormatSpec(
    name="sparkplug_b",
    create=SparkplugDecoder,
    topic="spBv1.0/#",
    summary="Sparkplug B births and data: alias tables per connection, seq checked",
)
