"""PayloadMapper and TopicRouter: JSON payloads of sensor nodes to RawSamples or Rejects."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub
from pydantic import ValidationError

from drivers.mqtt.config import TopicMapping
from drivers.mqtt.formats import Decoded
from drivers.mqtt.payload import (
    REJECT_REASONS,
    PayloadMapper,
    TopicRouter,
    filter_matches,
)
from gateway.core.clock import NS_PER_S
from gateway.core.model import RawSample, Reject

RECEIVED_NS = 1_767_225_600 * NS_PER_S
SOURCE = "mqtt:nodes"
TOPIC = "sensors/node-7/telemetry"


def mapper(**fields: object) -> PayloadMapper:
    fields.setdefault("topic", "sensors/+/telemetry")
    if "sensor_topic_segment" not in fields:
        fields.setdefault("sensor_path", "id")
    return PayloadMapper(TopicMapping.model_validate(fields), max_payload_bytes=256)


def decode(m: PayloadMapper, document: object, topic: str = TOPIC) -> RawSample | Reject:
    return m.map(topic, json.dumps(document).encode(), RECEIVED_NS, SOURCE)


def sample(result: RawSample | Reject) -> RawSample:
    assert isinstance(result, RawSample), result
    return result


def reject(result: RawSample | Reject, reason: str) -> Reject:
    assert isinstance(result, Reject), result
    assert result.reason == reason, result
    assert result.reason in REJECT_REASONS
    assert result.dead_letter
    assert result.source == SOURCE
    return result


class TestFields:
    def test_flat_payload_becomes_a_sample(self) -> None:
        m = mapper(rh_path="rh", battery_path="bat", seq_path="n")
        doc = {"id": "node-7", "temp_c": 4.25, "ts": 1_767_225_600_123, "rh": 81, "bat": 3.1}
        got = sample(decode(m, doc | {"n": 42}))
        assert got == RawSample(
            sensor="node-7",
            temp_c=4.25,
            ts_ns=1_767_225_600_123 * 1_000_000,
            received_ns=RECEIVED_NS,
            source=SOURCE,
            rh=81.0,
            battery_v=3.1,
            seq=42,
        )

    def test_nested_paths_and_list_indices(self) -> None:
        m = mapper(sensor_path="dev.serial", temp_path="probes.1.t", ts_path="meta.time")
        doc = {
            "dev": {"serial": 1234},
            "probes": [{"t": 9.0}, {"t": -18.5}],
            "meta": {"time": 1_767_225_600_000},
        }
        got = sample(decode(m, doc))
        assert (got.sensor, got.temp_c) == ("1234", -18.5)

    def test_digit_key_of_an_object_is_a_key(self) -> None:
        m = mapper(temp_path="probes.0")
        assert sample(decode(m, {"id": "a", "probes": {"0": 3.5}, "ts": 0})).temp_c == 3.5

    def test_sensor_from_a_topic_segment(self) -> None:
        m = mapper(sensor_topic_segment=1)
        assert sample(decode(m, {"temp_c": 5, "ts": 1})).sensor == "node-7"

    def test_sensor_ids_map_device_ids(self) -> None:
        m = PayloadMapper(
            TopicMapping(topic="#", sensor_path="id"), sensor_ids={"node-7": "lis01-cold-a"}
        )
        got = sample(decode(m, {"id": "node-7", "temp_c": 5}))
        assert got.sensor == "lis01-cold-a"
        assert sample(decode(m, {"id": "other", "temp_c": 5})).sensor == "other"

    def test_payload_id_must_be_the_device_its_topic_names(self) -> None:
        """The review's forged reading: {"id": "cr1-a"} on sensors/evil/telemetry."""
        m = mapper(device_topic_segment=1)
        assert sample(decode(m, {"id": "node-7", "temp_c": 5})).sensor == "node-7"
        got = reject(
            decode(m, {"id": "cr1-a", "temp_c": 4.0}, topic="sensors/evil/telemetry"),
            "identity_mismatch",
        )
        assert "'cr1-a'" in got.detail and "'evil'" in got.detail
        assert got.topic == "sensors/evil/telemetry"

    def test_device_topic_segment_needs_a_payload_sensor_path(self) -> None:
        with pytest.raises(ValueError, match="device_topic_segment goes with sensor_path"):
            TopicMapping(topic="s/+", sensor_topic_segment=1, device_topic_segment=1)

    def test_optional_fields_absent_or_null_are_none(self) -> None:
        m = mapper(rh_path="rh", battery_path="bat", seq_path="n")
        got = sample(decode(m, {"id": "a", "temp_c": 1.0, "rh": None}))
        assert (got.rh, got.battery_v, got.seq, got.ts_ns) == (None, None, None, None)

    def test_integral_float_sequence_is_accepted(self) -> None:
        assert sample(decode(mapper(seq_path="n"), {"id": "a", "temp_c": 1, "n": 7.0})).seq == 7


class TestTimestamps:
    @pytest.mark.parametrize(
        ("fmt", "value", "expected_ns"),
        [
            ("epoch_s", 1_767_225_600, 1_767_225_600 * NS_PER_S),
            ("epoch_s", 1_767_225_600.25, 1_767_225_600_250_000_000),
            ("epoch_ms", 1_767_225_600_001, 1_767_225_600_001_000_000),
            ("epoch_ms", 1_767_225_600_001.5, 1_767_225_600_001_500_000),
            ("iso8601", "2026-01-01T00:00:00Z", 1_767_225_600 * NS_PER_S),
            ("iso8601", "2026-01-01T01:00:00.5+01:00", 1_767_225_600_500_000_000),
        ],
    )
    def test_formats(self, fmt: str, value: object, expected_ns: int) -> None:
        got = sample(decode(mapper(ts_format=fmt), {"id": "a", "temp_c": 1, "ts": value}))
        assert got.ts_ns == expected_ns

    def test_iso_matches_datetime(self) -> None:
        when = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
        got = sample(
            decode(mapper(ts_format="iso8601"), {"id": "a", "temp_c": 1, "ts": when.isoformat()})
        )
        assert got.ts_ns == int(when.timestamp()) * NS_PER_S + 123_456_000

    @pytest.mark.parametrize(
        "doc", [{"id": "a", "temp_c": 1}, {"id": "a", "temp_c": 1, "ts": None}]
    )
    def test_missing_timestamp_is_none(self, doc: dict[str, object]) -> None:
        assert sample(decode(mapper(), doc)).ts_ns is None

    def test_mapping_without_ts_path(self) -> None:
        m = mapper(ts_path=None)
        assert sample(decode(m, {"id": "a", "temp_c": 1, "ts": "junk"})).ts_ns is None

    @pytest.mark.parametrize(
        ("fmt", "value", "detail"),
        [
            ("iso8601", "2026-01-01T00:00:00", "no UTC offset"),
            ("iso8601", "yesterday", "not ISO 8601"),
            ("iso8601", 1_767_225_600, "must be a string"),
            ("epoch_ms", "1767225600000", "must be a number"),
            ("epoch_ms", True, "must be a number"),
            ("epoch_s", 1_767_225_600_000_000, "outside"),
            ("epoch_s", -1, "outside"),
            ("epoch_ms", 1e300, "outside"),
            ("iso8601", "0001-01-01T00:00:00+01:00", "out"),
        ],
    )
    def test_bad_timestamp(self, fmt: str, value: object, detail: str) -> None:
        got = reject(
            decode(mapper(ts_format=fmt), {"id": "a", "temp_c": 1, "ts": value}), "bad_timestamp"
        )
        assert got.detail.startswith("ts: ")
        assert detail in got.detail


class TestRejects:
    def test_too_large_keeps_a_truncated_raw(self) -> None:
        payload = json.dumps({"id": "a", "temp_c": 1, "pad": "x" * 400}).encode()
        got = reject(mapper().map(TOPIC, payload, RECEIVED_NS, SOURCE), "too_large")
        assert got.raw == payload[:256]
        assert got.topic == TOPIC
        assert str(len(payload)) in got.detail

    @pytest.mark.parametrize("payload", [b"{", b"\xff\xfe\x00", b"", b"[" * 10_000 + b"]" * 10_000])
    def test_not_json(self, payload: bytes) -> None:
        m = PayloadMapper(TopicMapping(topic="#", sensor_path="id"), max_payload_bytes=100_000)
        got = reject(m.map(TOPIC, payload, RECEIVED_NS, SOURCE), "not_json")
        assert got.raw == payload
        assert got.topic == TOPIC

    @pytest.mark.parametrize(("payload", "kind"), [(b"[1]", "array"), (b"21.5", "number")])
    def test_not_object(self, payload: bytes, kind: str) -> None:
        got = reject(mapper().map(TOPIC, payload, RECEIVED_NS, SOURCE), "not_object")
        assert kind in got.detail

    @pytest.mark.parametrize(
        ("doc", "field"),
        [
            ({"temp_c": 1}, "id"),
            ({"id": None, "temp_c": 1}, "id"),
            ({"id": "", "temp_c": 1}, "id"),
            ({"id": "a"}, "temp_c"),
            ({"id": "a", "temp_c": None}, "temp_c"),
        ],
    )
    def test_missing_field(self, doc: dict[str, object], field: str) -> None:
        got = reject(decode(mapper(), doc), "missing_field")
        assert got.detail.startswith(f"{field}: ")

    def test_missing_topic_segment(self) -> None:
        got = reject(decode(mapper(sensor_topic_segment=5), {"temp_c": 1}), "missing_field")
        assert "topic segment 5" in got.detail

    def test_missing_nested_path(self) -> None:
        m = mapper(temp_path="probes.3.t")
        got = reject(decode(m, {"id": "a", "probes": [{"t": 1}]}), "missing_field")
        assert got.detail.startswith("probes.3.t: ")

    @pytest.mark.parametrize(
        ("doc", "field"),
        [
            ({"id": "a", "temp_c": "4.5"}, "temp_c"),
            ({"id": "a", "temp_c": True}, "temp_c"),
            ({"id": "a", "temp_c": [4.5]}, "temp_c"),
            ({"id": 1.5, "temp_c": 1}, "id"),
            ({"id": {"x": 1}, "temp_c": 1}, "id"),
            ({"id": "a", "temp_c": 1, "rh": "wet"}, "rh"),
            ({"id": "a", "temp_c": 1, "n": 1.5}, "n"),
        ],
    )
    def test_bad_type(self, doc: dict[str, object], field: str) -> None:
        got = reject(decode(mapper(rh_path="rh", seq_path="n"), doc), "bad_type")
        assert got.detail.startswith(f"{field}: ")

    @pytest.mark.parametrize(
        "payload",
        [
            b'{"id": "a", "temp_c": NaN}',
            b'{"id": "a", "temp_c": Infinity}',
            b'{"id": "a", "temp_c": -Infinity}',
            b'{"id": "a", "temp_c": 1e999}',
            b'{"id": "a", "temp_c": 1' + b"0" * 400 + b"}",
            b'{"id": "a", "temp_c": 1, "ts": NaN}',
        ],
    )
    def test_non_finite(self, payload: bytes) -> None:
        m = PayloadMapper(TopicMapping(topic="#", sensor_path="id"), max_payload_bytes=1000)
        got = reject(m.map(TOPIC, payload, RECEIVED_NS, SOURCE), "non_finite")
        assert got.raw == payload

    @given(st.binary(max_size=300))
    def test_arbitrary_bytes_never_raise(self, payload: bytes) -> None:
        result = mapper(rh_path="rh", seq_path="n").map(TOPIC, payload, RECEIVED_NS, SOURCE)
        assert isinstance(result, RawSample | Reject)

    json_values = st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=10,
    )

    @given(
        st.dictionaries(
            st.sampled_from(["id", "temp_c", "ts", "rh", "n", "x"]), json_values, max_size=6
        ),
        st.sampled_from(["epoch_s", "epoch_ms", "iso8601"]),
    )
    def test_arbitrary_json_objects_never_raise(
        self, doc: dict[str, object], ts_format: str
    ) -> None:
        m = PayloadMapper(
            TopicMapping.model_validate(
                {
                    "topic": "#",
                    "sensor_path": "id",
                    "ts_format": ts_format,
                    "rh_path": "rh",
                    "seq_path": "n",
                }
            ),
            max_payload_bytes=100_000,
        )
        result = m.map(TOPIC, json.dumps(doc).encode(), RECEIVED_NS, SOURCE)
        if isinstance(result, Reject):
            assert result.reason in REJECT_REASONS
            assert result.dead_letter


class TestTopicRouting:
    @pytest.mark.parametrize(
        ("topic_filter", "topic", "matches"),
        [
            ("sensors/+/telemetry", "sensors/a/telemetry", True),
            ("sensors/+/telemetry", "sensors/a/b/telemetry", False),
            ("sensors/#", "sensors", True),
            ("sensors/#", "sensors/a/b", True),
            ("#", "$SYS/broker/uptime", False),
            ("+/broker/uptime", "$SYS/broker/uptime", False),
            ("$SYS/#", "$SYS/broker/uptime", True),
            ("a/+", "a/", True),
            ("a/+", "a", False),
        ],
    )
    def test_filter_matches(self, topic_filter: str, topic: str, matches: bool) -> None:
        assert filter_matches(topic_filter.split("/"), topic) is matches
        assert topic_matches_sub(topic_filter, topic) is matches

    levels = st.sampled_from(["a", "b", "", "$x"])

    @given(
        st.lists(st.sampled_from(["a", "b", "", "+", "$x"]), min_size=1, max_size=4).flatmap(
            lambda f: st.sampled_from([f, [*f, "#"]])
        ),
        st.lists(levels, min_size=1, max_size=5),
    )
    def test_filter_matches_agrees_with_paho(
        self, filter_levels: list[str], topic: list[str]
    ) -> None:
        topic_name = "/".join(topic)
        expected = topic_matches_sub("/".join(filter_levels), topic_name)
        assert filter_matches(filter_levels, topic_name) is expected

    def test_first_matching_subscription_wins(self) -> None:
        router = TopicRouter(
            [
                TopicMapping(topic="sensors/+/telemetry", sensor_path="id"),
                TopicMapping(topic="sensors/#", sensor_topic_segment=1, temp_path="t"),
            ]
        )
        first, second = router.decoders
        assert router.decoder_for("sensors/x/telemetry") is first
        assert router.decoder_for("sensors/x/other") is second
        assert router.decoder_for("sensors/x/telemetry") is first  # cached
        assert router.decoder_for("elsewhere") is None

    def test_unmapped_topic_is_a_no_mapping_reject(self) -> None:
        router = TopicRouter([TopicMapping(topic="sensors/+/telemetry", sensor_path="id")])
        unmapped = router.decode("old/topic", b"{}", RECEIVED_NS, SOURCE)
        assert unmapped.samples == ()
        (got,) = unmapped.rejects
        got = reject(got, "no_mapping")
        assert (got.topic, got.raw) == ("old/topic", b"{}")
        ok = router.decode(TOPIC, b'{"id": "a", "temp_c": 2}', RECEIVED_NS, SOURCE)
        assert ok.rejects == ()
        (one,) = ok.samples
        assert sample(one).temp_c == 2.0

    def test_a_decoder_that_raises_is_a_decoder_error_dead_letter(self) -> None:
        router = TopicRouter([TopicMapping(topic="sensors/+/telemetry", sensor_path="id")])

        class Broken:
            def decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
                raise KeyError("bug")

        router._routes[0] = (router._routes[0][0], Broken())
        got = router.decode(TOPIC, b"{...}", RECEIVED_NS, SOURCE)
        (dead,) = got.rejects
        assert (dead.reason, dead.raw, dead.dead_letter) == ("decoder_error", b"{...}", True)
        assert dead.detail == "KeyError: 'bug'"

    def test_unknown_format_is_a_config_error(self) -> None:
        with pytest.raises(ValidationError, match="unknown format 'nope'"):
            TopicMapping(topic="a/#", format="nope")
