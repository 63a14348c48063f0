"""Where a trace gets its data: InfluxDB over InfluxQL, or the local journal.

Both sources answer the same three questions (:class:`TraceSource`): the shipment's custody
events, the readings of some zones in a time window, and the alerts on some subjects.

InfluxQL safety: every value placed in a query goes through :func:`validate_id` first (the
ids the gateway itself accepts: ``^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$``) and then through
:func:`quote_literal` or :func:`quote_ident`; times are integers. No query text is built
from anything else, so a crafted shipment id is refused before a query exists, and even an
unvalidated one stays inside its string literal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from gateway.core.errors import GatewayError
from gateway.core.model import IDENTIFIER_PATTERN
from gateway.influxql.client import InfluxQLClient, InfluxQueryError, quote_literal
from gateway.notify.store import Attempt

ID_PATTERN = re.compile(IDENTIFIER_PATTERN)
NS_PER_S = 1_000_000_000
DAY_NS = 86_400 * NS_PER_S
ALERT_LOOKBACK_NS = DAY_NS  # an alert raised shortly before arrival is still on the log
ALERT_LOOKAHEAD_NS = 7 * DAY_NS  # acknowledgements and clears that came after custody

Progress = Callable[[int, int], None]
"""Called with (chunks done, chunks in all) while readings are fetched."""


class TraceInputError(GatewayError, ValueError):
    """An id or argument that cannot be placed in a query (or names nothing)."""


class TraceSourceError(GatewayError):
    """The data source failed (InfluxDB unreachable, a query error, an unreadable journal)."""


def validate_id(value: object, what: str) -> str:
    """Return value if it is a valid gateway id, else raise TraceInputError naming ``what``."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        msg = (
            f"invalid {what} {value!r}: use 1-64 characters, letters, digits and _ . : -,"
            " starting with a letter or digit"
        )
        raise TraceInputError(msg)
    return value


class TracePoint(NamedTuple):
    """One stored reading, as much of it as a trace needs."""

    ts_ns: int
    zone: str
    sensor: str
    temp_c: float
    quality: int
    order: int = 0  # commit order (journal id); 0 when the source has none (InfluxDB)


@dataclass(frozen=True, slots=True)
class CustodyStep:
    """One accepted custody event as stored (journal row or InfluxDB ``custody`` point)."""

    ts_ns: int
    kind: str
    zone: str
    actor: str
    carrier: str | None = None
    profile: str | None = None
    note: str | None = None
    temp_c: float | None = None
    seq: int | None = None
    hash: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """One alert with its lifecycle, as far as the source knows it."""

    alert_id: str
    rule: str
    severity: str
    subject: str
    state: str
    started_ns: int
    raised_ns: int | None = None
    acknowledged_ns: int | None = None
    acknowledged_by: str | None = None
    cleared_ns: int | None = None
    value: float | None = None
    limit: float | None = None
    # The notification record (gateway/notify/history.py): the acknowledgement's note
    # and every attempt to tell someone, oldest first.
    ack_note: str | None = None
    notifications: tuple[Attempt, ...] = ()


class TraceSource(Protocol):
    """What a trace reads; InfluxSource and JournalSource both provide it."""

    hub: str

    def custody_events(self, shipment: str) -> list[CustodyStep]:
        """The shipment's accepted custody events, oldest first."""
        ...

    def readings(
        self,
        zone: str,
        start_ns: int,
        end_ns: int,
        *,
        progress: Progress | None = None,
    ) -> list[TracePoint]:
        """Readings of a zone with start_ns <= ts < end_ns, by time."""
        ...

    def readings_many(
        self, windows: Sequence[tuple[str, int, int]], *, progress: Progress | None = None
    ) -> list[TracePoint]:
        """Readings of several (zone, start, end) windows, by time."""
        ...

    def alerts(
        self,
        subjects: Iterable[str],
        start_ns: int,
        end_ns: int,
        *,
        as_of_ns: int | None = None,
    ) -> list[AlarmRecord]:
        """Alerts on these subjects active at some time in [start_ns, end_ns).

        However long before ``start_ns`` they were raised; their changes up to ``as_of_ns``.
        """
        ...


def time_chunks(start_ns: int, end_ns: int, chunk_ns: int) -> list[tuple[int, int]]:
    """[start, end) cut into consecutive half-open pieces of at most chunk_ns."""
    if chunk_ns <= 0:
        msg = "chunk must be positive"
        raise TraceInputError(msg)
    out: list[tuple[int, int]] = []
    t = start_ns
    while t < end_ns:
        out.append((t, min(end_ns, t + chunk_ns)))
        t += chunk_ns
    return out


# -- query builders (the only places InfluxQL text is made) ---------------------------


def _where_time(start_ns: int, end_ns: int) -> str:
    return f"time >= {int(start_ns)} AND time < {int(end_ns)}"


def custody_query(hub: str, shipment: str, source: str = '"custody"') -> str:
    """SELECT of one shipment's custody points on one hub (values escaped, not validated)."""
    return (
        'SELECT "actor", "carrier", "temp_c", "seq", "hash", "note", "profile"'
        f' FROM {source} WHERE "hub" = {quote_literal(hub)}'
        f' AND "shipment" = {quote_literal(shipment)} GROUP BY "event", "zone"'
    )


def readings_query(
    hub: str, zone: str, start_ns: int, end_ns: int, source: str = '"reading"'
) -> str:
    """SELECT of one zone's readings in [start, end) (values escaped, not validated)."""
    return (
        f'SELECT "temp_c", "quality" FROM {source} WHERE "hub" = {quote_literal(hub)}'
        f' AND "zone" = {quote_literal(zone)} AND {_where_time(start_ns, end_ns)}'
        ' GROUP BY "sensor"'
    )


def alerts_query(
    hub: str, subjects: Sequence[str], start_ns: int, end_ns: int, source: str = '"alert"'
) -> str:
    """SELECT of alert points on these subjects in [start, end) (values escaped)."""
    if not subjects:
        msg = "alerts_query needs at least one subject"
        raise TraceInputError(msg)
    any_subject = " OR ".join(f'"subject" = {quote_literal(s)}' for s in subjects)
    return (
        'SELECT "state", "alert_id", "started_at", "value", "limit", "acknowledged_by",'
        f' "note" FROM {source} WHERE "hub" = {quote_literal(hub)} AND ({any_subject})'
        f' AND {_where_time(start_ns, end_ns)} GROUP BY "rule", "severity", "subject"'
    )


def last_alert_state_query(
    hub: str, subjects: Sequence[str], before_ns: int, source: str = '"alert"'
) -> str:
    """SELECT of each alert series' last state (and its alert id) before a time."""
    any_subject = " OR ".join(f'"subject" = {quote_literal(s)}' for s in subjects)
    return (
        f'SELECT last("state"), "alert_id" FROM {source} WHERE "hub" = {quote_literal(hub)}'
        f" AND ({any_subject}) AND time < {int(before_ns)}"
        ' GROUP BY "rule", "severity", "subject"'
    )


def alert_history_query(hub: str, alert_id: str, until_ns: int, source: str = '"alert"') -> str:
    """SELECT of every point of one alert up to a time (values escaped)."""
    return (
        'SELECT "state", "alert_id", "started_at", "value", "limit", "acknowledged_by"'
        f' FROM {source} WHERE "hub" = {quote_literal(hub)}'
        f' AND "alert_id" = {quote_literal(alert_id)} AND time < {int(until_ns)}'
        ' GROUP BY "rule", "severity", "subject"'
    )


_ACTIVE_STATES = frozenset({"raised", "acknowledged", "escalated"})


# -- InfluxDB ------------------------------------------------------------------------


class InfluxSource:
    """Reads a hub's data from InfluxDB through the shared InfluxQL client.

    Readings are fetched in ``chunk_s`` windows by ``workers`` threads (the client's
    pool is thread-safe).
    """

    def __init__(
        self,
        client: InfluxQLClient,
        hub: str,
        *,
        chunk_s: float = 86_400.0,
        workers: int = 4,
    ) -> None:
        self.client = client
        self.url = client.url
        self.database = validate_id(client.database, "database")
        self.hub = validate_id(hub, "hub id")
        if client.retention_policy is not None:
            validate_id(client.retention_policy, "retention policy")
        self.chunk_ns = round(chunk_s * NS_PER_S)
        self.workers = max(1, workers)

    def _from(self, measurement: str) -> str:
        return self.client.target(measurement)

    def run(self, query: str) -> list[dict[str, Any]]:
        """One InfluxQL statement; the series of its result (TraceSourceError on failure)."""
        series, _ = self.run_checked(query)
        return series

    def run_checked(self, query: str) -> tuple[list[dict[str, Any]], bool]:
        """Like :meth:`run`, and whether the server truncated the answer (``partial``).

        InfluxDB 1.x cuts a result at its ``[http] max-row-limit`` and marks it partial.
        """
        try:
            answer = self.client.query(query)
        except InfluxQueryError as exc:
            raise TraceSourceError(str(exc)) from exc
        series: list[dict[str, Any]] = []
        partial = False
        for result in answer.get("results", []):
            partial = partial or bool(result.get("partial"))
            for s in result.get("series", []):
                partial = partial or bool(s.get("partial"))
                series.append(s)
        return series, partial

    def custody_events(self, shipment: str) -> list[CustodyStep]:
        """The shipment's custody points, oldest first (by time, then per-hub seq)."""
        validate_id(shipment, "shipment id")
        return self._custody(custody_query(self.hub, shipment, self._from("custody")))

    def _custody(self, query: str) -> list[CustodyStep]:
        steps: list[CustodyStep] = []
        for s in self.run(query):
            tags = s.get("tags", {})
            cols = s["columns"]
            for values in s.get("values", []):
                row = dict(zip(cols, values, strict=True))
                steps.append(
                    CustodyStep(
                        ts_ns=int(row["time"]),
                        kind=str(tags.get("event", "")),
                        zone=str(tags.get("zone", "")),
                        actor=str(row.get("actor") or ""),
                        carrier=row.get("carrier"),
                        profile=row.get("profile"),
                        note=row.get("note"),
                        temp_c=_float_or_none(row.get("temp_c")),
                        seq=None if row.get("seq") is None else int(row["seq"]),
                        hash=row.get("hash"),
                    )
                )
        steps.sort(key=lambda st: (st.ts_ns, st.seq if st.seq is not None else 0))
        return steps

    def readings(
        self,
        zone: str,
        start_ns: int,
        end_ns: int,
        *,
        progress: Progress | None = None,
    ) -> list[TracePoint]:
        """One zone's readings in [start, end), fetched in time chunks (a few in parallel)."""
        validate_id(zone, "zone id")
        return self.readings_many([(zone, start_ns, end_ns)], progress=progress)

    def readings_many(
        self, windows: Sequence[tuple[str, int, int]], *, progress: Progress | None = None
    ) -> list[TracePoint]:
        """Readings of several (zone, start, end) windows; progress counts chunks."""
        source = self._from("reading")
        queries: list[tuple[str, int, int]] = []
        for zone, start_ns, end_ns in windows:
            validate_id(zone, "zone id")
            for a, b in time_chunks(start_ns, end_ns, self.chunk_ns):
                queries.append((zone, a, b))
        total = len(queries)
        if progress is not None:
            progress(0, total)
        out: list[TracePoint] = []
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            results = pool.map(lambda q: self._points_paged(q[0], q[1], q[2], source), queries)
            for done, points in enumerate(results, start=1):
                out.extend(points)
                if progress is not None:
                    progress(done, total)
        out.sort(key=lambda p: (p.ts_ns, p.sensor))
        return out

    def _points_paged(self, zone: str, start_ns: int, end_ns: int, source: str) -> list[TracePoint]:
        """One chunk's readings; a chunk the server truncated is halved until it fits.

        A silent truncation would drop the end of a zone's data from a claim report, so
        an answer marked ``partial`` is never used: it is fetched again in halves, and a
        one-second chunk still too big for the server's row limit is an error that says so.
        """
        series, partial = self.run_checked(readings_query(self.hub, zone, start_ns, end_ns, source))
        if not partial:
            return self._points(zone, series)
        if end_ns - start_ns <= NS_PER_S:
            msg = (
                f"InfluxDB {self.url} truncated the readings of zone {zone} at"
                f" {start_ns} ns even for a 1 s window (its [http] max-row-limit is too low"
                " for this zone's data); raise max-row-limit and run the trace again"
            )
            raise TraceSourceError(msg)
        middle = start_ns + (end_ns - start_ns) // 2
        return self._points_paged(zone, start_ns, middle, source) + self._points_paged(
            zone, middle, end_ns, source
        )

    def _points(self, zone: str, series: list[dict[str, Any]]) -> list[TracePoint]:
        out: list[TracePoint] = []
        for s in series:
            sensor = str(s.get("tags", {}).get("sensor", ""))
            cols = s["columns"]
            i_time, i_temp, i_q = cols.index("time"), cols.index("temp_c"), cols.index("quality")
            out.extend(
                TracePoint(int(v[i_time]), zone, sensor, float(v[i_temp]), int(v[i_q] or 0))
                for v in s.get("values", [])
                if v[i_temp] is not None
            )
        return out

    def alerts(
        self,
        subjects: Iterable[str],
        start_ns: int,
        end_ns: int,
        *,
        as_of_ns: int | None = None,
    ) -> list[AlarmRecord]:
        """Alerts on these subjects active during [start, end), with their later changes.

        An alert raised long before ``start`` and still active then is found by asking for
        the last state of each alert series before the look-back window; changes after
        ``as_of_ns`` are not read.
        """
        names = sorted({validate_id(s, "alert subject") for s in subjects})
        if not names:
            return []
        until = end_ns + ALERT_LOOKAHEAD_NS
        if as_of_ns is not None:
            until = min(until, as_of_ns + 1)
        since = start_ns - ALERT_LOOKBACK_NS
        source = self._from("alert")
        query = alerts_query(self.hub, names, since, until, source)
        points: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
        seen: set[str] = set()
        for s in self.run(query):
            tags = s.get("tags", {})
            for values in s.get("values", []):
                row = dict(zip(s["columns"], values, strict=True))
                seen.add(str(row.get("alert_id") or ""))
                points.append((int(values[0]), tags, row))
        for aid in self._active_before(names, since, source) - seen:
            for s in self.run(alert_history_query(self.hub, aid, until, source)):
                tags = s.get("tags", {})
                for values in s.get("values", []):
                    row = dict(zip(s["columns"], values, strict=True))
                    points.append((int(values[0]), tags, row))
        points.sort(key=lambda p: p[0])
        records = _fold_alert_points(points, start_ns, end_ns)
        from gateway.notify.history import influx_attempts, with_notifications

        return with_notifications(
            records, influx_attempts(self.run, self.hub, [r.alert_id for r in records],
                                     self._from("notification"))
        )  # fmt: skip

    def _active_before(self, names: Sequence[str], before_ns: int, source: str) -> set[str]:
        """Ids of alerts whose last state before ``before_ns`` was still active."""
        out: set[str] = set()
        for s in self.run(last_alert_state_query(self.hub, names, before_ns, source)):
            cols = s["columns"]
            for values in s.get("values", []):
                row = dict(zip(cols, values, strict=True))
                if str(row.get("last") or "") in _ACTIVE_STATES and row.get("alert_id"):
                    out.add(str(row["alert_id"]))
        return out


def _fold_alert_points(
    points: Iterable[tuple[int, dict[str, Any], dict[str, Any]]], start_ns: int, end_ns: int
) -> list[AlarmRecord]:
    records: dict[str, AlarmRecord] = {}
    for at_ns, tags, row in points:
        aid = str(row.get("alert_id") or "")
        state = str(row.get("state") or "")
        current = records.get(aid)
        if current is None:
            current = AlarmRecord(
                alert_id=aid,
                rule=str(tags.get("rule", "")),
                severity=str(tags.get("severity", "")),
                subject=str(tags.get("subject", "")),
                state=state,
                started_ns=int(row.get("started_at") or at_ns),
            )
        changes: dict[str, Any] = {"state": state, "severity": str(tags.get("severity", ""))}
        if state in {"raised", "escalated"} and current.raised_ns is None:
            changes["raised_ns"] = at_ns
        if state == "acknowledged" and current.acknowledged_ns is None:
            changes["acknowledged_ns"] = at_ns
            if row.get("note"):
                changes["ack_note"] = str(row["note"])
        if row.get("acknowledged_by"):
            changes["acknowledged_by"] = str(row["acknowledged_by"])
        if state == "cleared":
            changes["cleared_ns"] = at_ns
        if row.get("value") is not None:
            changes["value"] = float(row["value"])
        if row.get("limit") is not None:
            changes["limit"] = float(row["limit"])
        records[aid] = _replace(current, changes)
    return [
        r
        for r in sorted(records.values(), key=lambda r: (r.started_ns, r.alert_id))
        if r.started_ns < end_ns and (r.cleared_ns is None or r.cleared_ns >= start_ns)
    ]


def _replace(record: AlarmRecord, changes: dict[str, Any]) -> AlarmRecord:
    data = {name: getattr(record, name) for name in AlarmRecord.__slots__}
    data.update(changes)
    return AlarmRecord(**data)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


# -- the journal ---------------------------------------------------------------------


class JournalSource:
    """Reads the local journal (SQLite) read-only: custody rows, readings, alert outbox."""

    def __init__(self, journal_path: str | Path, hub: str) -> None:
        import sqlite3

        self.hub = validate_id(hub, "hub id")
        path = Path(journal_path)
        if not path.exists():
            msg = f"journal {path} does not exist"
            raise TraceSourceError(msg)
        try:
            # mode=ro: a trace must never change the journal the daemon is writing
            self._db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            self._db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            msg = f"cannot open journal {path}: {exc}"
            raise TraceSourceError(msg) from exc
        self._sqlite_error = sqlite3.Error

    def close(self) -> None:
        """Close the read-only connection."""
        self._db.close()

    def _rows(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(sql, tuple(params)).fetchall())
        except self._sqlite_error as exc:
            msg = f"journal query failed: {exc}"
            raise TraceSourceError(msg) from exc

    def _columns(self, table: str) -> set[str]:
        return {str(r[1]) for r in self._rows(f"PRAGMA table_info({table})", ())}

    def custody_events(self, shipment: str) -> list[CustodyStep]:
        """Accepted custody rows of the shipment, in the order they were recorded."""
        validate_id(shipment, "shipment id")
        have = self._columns("custody_events")
        if not have:
            return []
        # temp_c, seq and hash arrive with the hash-chained handoff records; read them if there
        extra = [c for c in ("temp_c", "seq", "hash") if c in have]
        cols = ["ts_ns", "kind", "zone", "actor", "carrier", "profile", "note", *extra]
        rows = self._rows(
            f"SELECT {', '.join(cols)} FROM custody_events"
            " WHERE shipment = ? AND accepted = 1 ORDER BY id",
            (shipment,),
        )
        steps = []
        for row in rows:
            data = dict(zip(cols, row, strict=True))
            steps.append(
                CustodyStep(
                    ts_ns=int(data["ts_ns"]),
                    kind=str(data["kind"]),
                    zone=str(data["zone"]),
                    actor=str(data["actor"]),
                    carrier=data["carrier"],
                    profile=data["profile"],
                    note=data["note"],
                    temp_c=_float_or_none(data.get("temp_c")),
                    seq=None if data.get("seq") is None else int(data["seq"]),
                    hash=data.get("hash"),
                )
            )
        return steps

    def readings(
        self,
        zone: str,
        start_ns: int,
        end_ns: int,
        *,
        progress: Progress | None = None,
    ) -> list[TracePoint]:
        """One zone's readings in [start, end), by time."""
        return self.readings_many([(zone, start_ns, end_ns)], progress=progress)

    def readings_many(
        self, windows: Sequence[tuple[str, int, int]], *, progress: Progress | None = None
    ) -> list[TracePoint]:
        """Readings of several (zone, start, end) windows; progress counts windows."""
        out: list[TracePoint] = []
        if progress is not None:
            progress(0, len(windows))
        for done, (zone, start_ns, end_ns) in enumerate(windows, start=1):
            validate_id(zone, "zone id")
            rows = self._rows(
                "SELECT ts_ns, sensor, temp_c, quality, id FROM readings"
                " WHERE zone = ? AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns, id",
                (zone, start_ns, end_ns),
            )
            out.extend(
                TracePoint(int(r[0]), zone, str(r[1]), float(r[2]), int(r[3]), int(r[4]))
                for r in rows
            )
            if progress is not None:
                progress(done, len(windows))
        out.sort(key=lambda p: (p.ts_ns, p.sensor))
        return out

    def alerts(
        self,
        subjects: Iterable[str],
        start_ns: int,
        end_ns: int,
        *,
        as_of_ns: int | None = None,
    ) -> list[AlarmRecord]:
        """Alerts on these subjects active during [start, end), from the alerts table.

        However long before ``start`` they were raised; the analysis drops changes after
        ``as_of_ns`` (the table holds each alert's current row).
        """
        names = sorted({validate_id(s, "alert subject") for s in subjects})
        if not names or not self._columns("alerts"):
            return []
        marks = ",".join("?" for _ in names)
        rows = self._rows(
            "SELECT id, rule, severity, subject, state, started_ns, raised_ns,"
            " acknowledged_ns, acknowledged_by, cleared_ns, value, limit_value FROM alerts"
            f" WHERE hub = ? AND subject IN ({marks}) AND started_ns < ?"
            " AND (cleared_ns IS NULL OR cleared_ns >= ?) ORDER BY started_ns, id",
            (self.hub, *names, end_ns, start_ns),
        )
        records = [
            AlarmRecord(
                alert_id=str(r[0]),
                rule=str(r[1]),
                severity=str(r[2]),
                subject=str(r[3]),
                state=str(r[4]),
                started_ns=int(r[5]),
                raised_ns=None if r[6] is None else int(r[6]),
                acknowledged_ns=None if r[7] is None else int(r[7]),
                acknowledged_by=r[8],
                cleared_ns=None if r[9] is None else int(r[9]),
                value=_float_or_none(r[10]),
                limit=_float_or_none(r[11]),
            )
            for r in rows
        ]
        from gateway.notify.history import alarm_logs, with_notifications

        try:
            logs = alarm_logs(self._db, [r.alert_id for r in records])
        except self._sqlite_error as exc:
            msg = f"journal query failed: {exc}"
            raise TraceSourceError(msg) from exc
        return with_notifications(records, logs)
