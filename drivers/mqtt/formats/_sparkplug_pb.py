"""The Sparkplug B ``Payload`` protobuf message, described in code for protobuf's runtime.

Sparkplug B 3.0 (Eclipse Sparkplug specification, section 6.4 "Sparkplug B payload"):
``Payload`` has ``timestamp`` (1, uint64, ms), ``metrics`` (2, repeated Metric), ``seq``
(3, uint64), ``uuid`` (4) and ``body`` (5); ``Metric`` has ``name`` (1), ``alias`` (2,
uint64), ``timestamp`` (3, uint64 ms), ``datatype`` (4, uint32), ``is_historical`` (5),
``is_transient`` (6), ``is_null`` (7) and a value oneof: ``int_value`` (10, uint32),
``long_value`` (11, uint64), ``float_value`` (12), ``double_value`` (13),
``boolean_value`` (14), ``string_value`` (15), ``bytes_value`` (16). Metadata,
properties, data sets and templates (fields 8, 9, 17, 18) are not read; protobuf keeps
them as unknown fields, so a payload that uses them still decodes.

The descriptor is built here instead of shipping protoc output: protobuf's runtime
(``google.protobuf``, the Python package Google maintains) parses with its C extension
(upb), and no generated code has to match the runtime's version.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto

# Sparkplug B DataType enumeration (the values of Metric.datatype) this module decodes.
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING = 9, 10, 11, 12

_METRIC_FIELDS: Final = (
    ("name", 1, _F.TYPE_STRING),
    ("alias", 2, _F.TYPE_UINT64),
    ("timestamp", 3, _F.TYPE_UINT64),
    ("datatype", 4, _F.TYPE_UINT32),
    ("is_historical", 5, _F.TYPE_BOOL),
    ("is_transient", 6, _F.TYPE_BOOL),
    ("is_null", 7, _F.TYPE_BOOL),
    ("int_value", 10, _F.TYPE_UINT32),
    ("long_value", 11, _F.TYPE_UINT64),
    ("float_value", 12, _F.TYPE_FLOAT),
    ("double_value", 13, _F.TYPE_DOUBLE),
    ("boolean_value", 14, _F.TYPE_BOOL),
    ("string_value", 15, _F.TYPE_STRING),
    ("bytes_value", 16, _F.TYPE_BYTES),
)
_VALUE_FIELDS: Final = frozenset(range(10, 17))


def _build() -> tuple[Any, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="coldchain/sparkplug_b_subset.proto",
        package="org.eclipse.tahu.protobuf",
        syntax="proto2",
    )
    payload = file.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    for name, number, kind in _METRIC_FIELDS:
        field = metric.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL)
        if number in _VALUE_FIELDS:
            field.oneof_index = 0
    payload.field.add(name="timestamp", number=1, type=_F.TYPE_UINT64, label=_F.LABEL_OPTIONAL)
    payload.field.add(
        name="metrics",
        number=2,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=".org.eclipse.tahu.protobuf.Payload.Metric",
    )
    payload.field.add(name="seq", number=3, type=_F.TYPE_UINT64, label=_F.LABEL_OPTIONAL)
    payload.field.add(name="uuid", number=4, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    payload.field.add(name="body", number=5, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    payload_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload")
    )
    metric_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload.Metric")
    )
    return payload_class, metric_class


Payload, Metric = _build()
