"""Input bounds at the ingest boundary and the poison-message guard of the commit."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.mqtt.config import TopicMapping
from drivers.mqtt.payload import PayloadMapper
from gateway.config import parse_config
from gateway.core.clock import ManualClock
from gateway.core.metrics import Counters
from gateway.core.model import Delivery, RawSample, Reject
from gateway.ingest.batcher import REFUSED, Ingest
from gateway.ingest.bounds import BOUNDS, INT64_MAX, problem, screen
from gateway.ingest.normalize import Normalizer
from gateway.journal.store import Journal, JournalRunner

CONFIG = parse_config(
    {
        "hub": {"id": "h"},
        "zones": [{"id": "cr1", "kind": "cold_storage"}],
        "sensors": [{"id": "node-1", "zone": "cr1"}],
        "drivers": {
            "mqtt": [
                {
                    "name": name,
                    "sensors": ["node-1"],
                    "subscriptions": [{"topic": "sensors/+/telemetry", "sensor_topic_segment": 1}],
                }
                for name in ("nodes", "n")  # the sources the samples below carry
            ]
        },
    }
)
NOW_NS = 1_767_225_600 * 10**9
TOPIC = "sensors/node-1/telemetry"


def _sample(**fields: object) -> RawSample:
    base: dict[str, object] = {
        "sensor": "node-1",
        "temp_c": 4.0,
        "ts_ns": NOW_NS,
        "received_ns": NOW_NS,
        "source": "mqtt:nodes",
    }
    return RawSample(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"seq": 2**64}, "out_of_range"),
        ({"seq": -(2**63) - 1}, "out_of_range"),
        ({"seq": 1e300}, "bad_type"),
        ({"seq": True}, "bad_type"),
        ({"temp_c": math.nan}, "non_finite"),
        ({"temp_c": -math.inf}, "non_finite"),
        ({"temp_c": 2**2000}, "non_finite"),
        ({"temp_c": -300.0}, "out_of_range"),
        ({"temp_c": 1e300}, "out_of_range"),
        ({"temp_c": "4.0"}, "bad_type"),
        ({"rh": 101.0}, "out_of_range"),
        ({"battery_v": 1e12}, "out_of_range"),
        ({"ts_ns": -1}, "out_of_range"),
        ({"ts_ns": 2**63}, "out_of_range"),
        ({"received_ns": 2**70}, "out_of_range"),
    ],
)
def test_out_of_bounds_fields_are_named(fields: dict[str, object], reason: str) -> None:
    found = problem(_sample(**fields))
    assert found is not None
    assert found[0] == reason
    assert next(iter(fields)) in found[1]
    assert len(found[1]) < 120  # 2**2000 is not spelled out in a log line


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"seq": INT64_MAX, "rh": 0, "battery_v": 100.0, "ts_ns": None},
        {"seq": -(2**63), "temp_c": -273.15, "ts_ns": INT64_MAX},
        {"temp_c": 1000, "rh": 100.0, "battery_v": 0.0},
    ],
)
def test_edges_inside_the_bounds_pass(fields: dict[str, object]) -> None:
    assert problem(_sample(**fields)) is None


def test_screen_keeps_raw_bytes_and_returns_good_samples_uncopied() -> None:
    good = [_sample(), _sample(ts_ns=NOW_NS + 1)]
    same, none = screen(good, [])
    assert same is good and none == []
    bad = _sample(seq=2**64)
    kept, rejects = screen([good[0], bad], [(TOPIC, b"a"), (TOPIC, b'{"seq": 2**64}')])
    assert kept == [good[0]]
    assert [(r.reason, r.raw, r.topic, r.dead_letter) for r in rejects] == [
        ("out_of_range", b'{"seq": 2**64}', TOPIC, True)
    ]
    # Without origins (a driver that gives none) the sample itself is kept.
    _, rejects = screen([bad])
    assert rejects[0].raw == repr(bad).encode()


# ---- the property: every JSON number in every mapped field, through the whole chain ----

# RFC 8259 section 6: number = [ minus ] int [ frac ] [ exp ]. Exponents far past the
# float range (1e400 parses to inf), integers far past 64 bits.
_digits = st.text("0123456789", min_size=1, max_size=30)
JSON_NUMBER = st.builds(
    lambda minus, whole, frac, exp: f"{minus}{whole}{frac}{exp}",
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.builds(lambda a, b: a + b, st.sampled_from("123456789"), _digits)),
    st.one_of(st.just(""), _digits.map(lambda d: "." + d)),
    st.one_of(
        st.just(""),
        st.builds(
            lambda e, sign, n: f"{e}{sign}{n}",
            st.sampled_from("eE"),
            st.sampled_from(["", "+", "-"]),
            st.integers(0, 400),
        ),
    ),
) | st.sampled_from(
    [
        "18446744073709551616",
        "9223372036854775808",
        "-9223372036854775809",
        "1e300",
        "-1e300",
        "1e-400",
        "0",
        "-0",
        "2.5e-324",
    ]
)

FIELDS = {
    "temp_c": "temp_c",
    "ts": "ts_ns",
    "rh": "rh",
    "battery_v": "battery_v",
    "seq": "seq",
}


@settings(max_examples=400, deadline=None)
@given(
    field=st.sampled_from(sorted(FIELDS)),
    number=JSON_NUMBER,
    ts_format=st.sampled_from(["epoch_ms", "epoch_s"]),
)
def test_any_json_number_in_any_field_is_stored_or_dead_lettered(
    field: str, number: str, ts_format: str
) -> None:
    journal = Journal(":memory:")  # fresh: a second example at the same ts is a conflict
    mapping = TopicMapping.model_validate(
        {
            "topic": "sensors/+/telemetry",
            "sensor_path": "id",
            "temp_path": "temp_c",
            "ts_path": "ts",
            "ts_format": ts_format,
            "rh_path": "rh",
            "battery_path": "battery_v",
            "seq_path": "seq",
        }
    )
    doc = {"id": "node-1", "temp_c": "@temp_c", "ts": "@ts", "rh": 80.0, "battery_v": 3.1, "seq": 7}
    doc["temp_c"], doc["ts"] = 4.5, 1_767_225_600
    body = json.dumps(doc).replace(f'"{field}": {json.dumps(doc[field])}', f'"{field}": {number}')
    payload = body.encode()
    decoded = PayloadMapper(mapping, max_payload_bytes=4096).map(TOPIC, payload, NOW_NS, "mqtt:n")
    samples = [decoded] if isinstance(decoded, RawSample) else []
    rejects = [decoded] if isinstance(decoded, Reject) else []
    kept, out_of_bounds = screen(samples, [(TOPIC, payload)] * len(samples))
    result = Normalizer(CONFIG).normalize(kept)
    before = journal.count("readings"), journal.count("dead_letters")
    dead = [*rejects, *out_of_bounds, *result.rejects]
    journal.commit_batch(result.readings, dead, NOW_NS)  # never raises
    added = journal.count("readings") - before[0], journal.count("dead_letters") - before[1]
    if added == (0, 1):
        letter = journal.dead_letters(1)[0]
        assert letter.payload == payload
        return
    # Stored: every value is within its documented bounds and exactly what was decoded.
    assert added[1] == 0
    stored = journal.readings_after(journal.last_id() - 1, 1)[0][1]
    for name, (_, low, high) in BOUNDS.items():
        value = getattr(stored, name, None)
        if value is not None:
            assert low <= value <= high, (name, value)
            assert not isinstance(value, float) or math.isfinite(value)
    assert stored.seq == (decoded.seq if isinstance(decoded, RawSample) else None)


# ---- the ingest: a poison message among good ones, and the commit guard ----


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[JournalRunner]:
    r = JournalRunner(Journal(tmp_path / "j.db"))
    yield r
    r.close()


async def test_two_to_the_64_among_good_readings_is_dead_lettered_and_acked(
    runner: JournalRunner,
) -> None:
    counters = Counters()
    ingest = Ingest(runner, Normalizer(CONFIG), counters, ManualClock())
    task = asyncio.create_task(ingest.run())
    samples = [_sample(ts_ns=NOW_NS + i, seq=i) for i in range(200)]
    samples.insert(100, _sample(ts_ns=NOW_NS + 10**6, seq=2**64))
    origins = [(TOPIC, b"%d" % i) for i in range(len(samples))]
    acked: list[bool] = []
    await ingest.submit("nodes", Delivery(samples, ack=lambda: acked.append(True), origins=origins))
    await ingest.close()
    await task
    assert acked == [True]
    assert runner.journal.count("readings") == 200
    [letter] = runner.journal.dead_letters()
    assert (letter.reason, letter.payload, letter.topic) == ("out_of_range", b"100", TOPIC)
    assert counters.dropped == {"nodes:out_of_range": 1}
    assert counters.committed == 200


async def test_a_record_sqlite_refuses_is_bisected_out_and_the_rest_committed(
    runner: JournalRunner,
) -> None:
    counters = Counters()
    ingest = Ingest(runner, Normalizer(CONFIG), counters, ManualClock())
    committed: list[int] = []
    ingest.on_commit(lambda rs: committed.append(len(rs)))
    task = asyncio.create_task(ingest.run())
    # A driver bug past every check: a dead letter whose payload sqlite3 cannot bind.
    poison = Reject("not_json", "mqtt:nodes", {"not": "bytes"}, TOPIC, dead_letter=True)  # type: ignore[arg-type]
    fine = Reject("not_json", "mqtt:nodes", b"{", TOPIC, dead_letter=True)
    samples = [_sample(ts_ns=NOW_NS + i) for i in range(50)]
    acked: list[bool] = []
    await ingest.submit(
        "nodes", Delivery(samples, [fine, poison, fine], ack=lambda: acked.append(True))
    )
    await ingest.close()
    await task
    assert acked == [True]
    assert runner.journal.count("readings") == 50
    reasons = sorted(d.reason for d in runner.journal.dead_letters())
    assert reasons == ["journal_refused", "not_json", "not_json"]
    refused = next(d for d in runner.journal.dead_letters() if d.reason == REFUSED)
    assert b"not" in refused.payload
    assert "ProgrammingError" in refused.detail
    assert sum(committed) == 50
    assert counters.dropped["nodes:journal_refused"] == 1
