"""Tampering with a real run's journal: each attack is found by `coldchain verify`, which
names the first record that does not match, and the trace verdict becomes REJECT
``records_altered`` (issue 17's Show list).

One gateway run (serial board, custody handoffs, InfluxDB, the hub key made with `coldchain
keys init`) produces the journal; every scenario works on a fresh copy of it, with the
external checkpoints left where the run put them (InfluxDB).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from firmware_sim.board import SensorBoardSim
from firmware_sim.thermal import Probe
from gateway.apps.localservices import InfluxDB1
from gateway.cli import main
from gateway.config import load_config
from gateway.custody.chain import GENESIS_HASH, HASHED_FIELDS, record_hash
from gateway.evidence.chain import Sealer
from tests.integration.harness import running_gateway, wait_for


class SetRoom:
    """A zone model whose temperature the test sets."""

    def __init__(self, temp_c: float) -> None:
        self.temperature_c = temp_c

    def step(self, dt_s: float) -> None:
        """Nothing moves unless the test says so."""


def _toml(journal: Path, influx_url: str | None, db: str, port: str = "") -> str:
    text = (
        f'[hub]\nid = "hub-test"\n[journal]\npath = "{journal}"\ncommit_interval_ms = 20\n'
        "[evidence]\nseal_interval_s = 0\n"
        '[[zones]]\nid = "cold-room-1"\nkind = "cold_storage"\nprofile = "chilled"\n'
        '[[zones]]\nid = "dock-1"\nkind = "dock"\n'
        '[[sensors]]\nid = "cr1-a"\nzone = "cold-room-1"\ninterval_s = 1\n'
    )
    if port:
        text += (
            f'[[drivers.serial]]\nname = "board-a"\nport = "{port}"\nboard = "A1"\n'
            '[drivers.serial.probes]\n"1" = "cr1-a"\n'
        )
    if influx_url is not None:
        text += f'[sinks.influx]\napi = "v1"\nurl = "{influx_url}"\ndatabase = "{db}"\n'
    return text


def _copy(run_dir: Path, name: str, influx_url: str, db: str) -> tuple[Path, Path]:
    """A fresh copy of the run's journal and key; returns (config file, journal)."""
    target = run_dir / name
    target.mkdir()
    for f in (run_dir / "run").iterdir():
        if f.name.startswith(("journal.db", "hub-key")):
            shutil.copy2(f, target / f.name)
    journal = target / "journal.db"
    config = target / "gw.toml"
    config.write_text(_toml(journal, influx_url, db))
    return config, journal


def _verify(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["verify", "--config", str(config), "--source", "both", *extra])
    return code, capsys.readouterr().out


def _rechain_custody(db: sqlite3.Connection) -> None:
    """The attacker's fifteen lines: re-hash the custody chain with the published form."""
    rows = db.execute(
        "SELECT id, hub, seq, shipment, kind, zone, actor, carrier, profile, note, ts_ns,"
        " temp_c FROM custody_events WHERE seq IS NOT NULL ORDER BY seq"
    ).fetchall()
    prev = GENESIS_HASH
    for row in rows:
        names = ("hub", "seq", "shipment", "event", "zone", "actor", "carrier", "profile",
                 "note", "ts_ns", "temp_c")  # fmt: skip
        fields = dict(zip(names, row[1:], strict=True))
        fields["prev_hash"] = prev
        assert set(fields) == set(HASHED_FIELDS)
        digest = record_hash(fields)
        db.execute(
            "UPDATE custody_events SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, row[0])
        )
        prev = digest


def _forge_evidence(db: sqlite3.Connection, *, keep_checkpoints: bool = True) -> None:
    """A self-consistent forgery: the whole chain recomputed with the published form."""
    db.execute("DELETE FROM evidence_chain")
    if not keep_checkpoints:
        db.execute("DELETE FROM evidence_checkpoints")
    db.commit()
    db.isolation_level = None
    Sealer(db, time.time_ns).seal_now(time.time_ns())


async def test_tampering_with_a_real_run_is_found_and_named(
    tmp_path: Path, influx_db: tuple[InfluxDB1, str], capsys: pytest.CaptureFixture[str]
) -> None:
    influx, db = influx_db
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    room = SetRoom(3.5)
    with SensorBoardSim(
        {"1": Probe(room, noise_c=0.0, resolution_c=0.0)},
        board="A1",
        link_dir=tmp_path,
    ) as board:
        config_file = run_dir / "gw.toml"
        config_file.write_text(_toml(run_dir / "journal.db", influx.url, db, str(board.link_path)))
        assert main(["keys", "init", "--config", str(config_file)]) == 0
        printed = capsys.readouterr().out
        assert "fingerprint:" in printed
        assert (run_dir / "hub-key.pem").stat().st_mode & 0o777 == 0o600
        config = load_config(config_file)
        async with running_gateway(config) as gw:
            await wait_for(lambda: gw.counters.connected.get("board-a"), 5, "port opened")
            await board.send_lines(5)
            await wait_for(lambda: gw.counters.committed == 5, what="readings")
            now = time.time_ns()
            for i, (kind, zone) in enumerate(
                [
                    ("received", "cold-room-1"),
                    ("put_away", "cold-room-1"),
                    ("picked", "cold-room-1"),
                ]
            ):
                body = {"shipment": "SH-9", "event": kind, "zone": zone, "actor": "ana",
                        "ts_ns": now + i * 1_000_000_000}  # fmt: skip
                if kind == "received":
                    body["profile"] = "chilled"
                await gw.engine.apply_custody(json.dumps(body).encode(), "test")
            await wait_for(
                lambda: any(
                    r["reason"] == "handoff"
                    for r in influx.rows("SELECT * FROM evidence_checkpoint", db)
                ),
                what="a handoff checkpoint in InfluxDB",
            )
            room.temperature_c = 9.0
            await board.send_lines(5)
            await wait_for(lambda: gw.counters.committed == 10, what="more readings")
    points = influx.rows("SELECT * FROM evidence_checkpoint", db)
    reasons = [p["reason"] for p in points]
    assert reasons[0] == "start" and reasons[-1] == "stop" and "handoff" in reasons
    assert all(p["signature"] for p in points)

    # 1. The untouched copy verifies, anchored by signed checkpoints in InfluxDB.
    cfg, journal = _copy(tmp_path, "intact", influx.url, db)
    code, out = _verify(cfg, capsys, "--require-signed")
    assert code == 0, out
    assert "evidence: OK" in out
    assert "influx checkpoints" in out

    # 2. Edit a reading (issue 17: the UPDATE no hash covered).
    cfg, journal = _copy(tmp_path, "edit", influx.url, db)
    with sqlite3.connect(journal) as conn:
        target = conn.execute("SELECT id FROM readings WHERE temp_c > 8 ORDER BY id").fetchone()[0]
        conn.execute("UPDATE readings SET temp_c = 4.0 WHERE id = ?", (target,))
    code, out = _verify(cfg, capsys)
    assert code == 1
    assert f"readings id {target} (sensor cr1-a, zone cold-room-1" in out
    assert "altered" in out
    out_dir = tmp_path / "trace-edit"
    trace = ["trace", "SH-9", "--config", str(cfg), "--source", "journal", "--out", str(out_dir)]
    assert await asyncio.to_thread(main, trace) in (0, 1)
    capsys.readouterr()
    summary = json.loads((out_dir / "trace-SH-9.json").read_text())
    assert summary["verdict"] == "reject"
    assert "records_altered" in [r["code"] for r in summary["reasons"]]

    # 3. Delete a reading.
    cfg, journal = _copy(tmp_path, "delete", influx.url, db)
    with sqlite3.connect(journal) as conn:
        conn.execute("DELETE FROM readings WHERE id = 3")
    code, out = _verify(cfg, capsys)
    assert code == 1
    assert "readings id 3" in out and "deleted" in out

    # 4. Re-chain the custody records with the published canonical form: the custody
    # chain alone says OK, the evidence chain names the edited record.
    cfg, journal = _copy(tmp_path, "rechain", influx.url, db)
    with sqlite3.connect(journal) as conn:
        conn.execute("UPDATE custody_events SET actor = 'mallory' WHERE seq = 2")
        _rechain_custody(conn)
    code, out = _verify(cfg, capsys)
    assert code == 1
    assert "journal: OK, 3 record(s)" in out  # the old custody check is fooled
    assert "custody_events id" in out and "shipment SH-9, put_away, seq 2" in out

    # 5. Replace the whole journal with a self-consistent forgery (no key): the edited
    # reading is re-sealed, but the signed checkpoints name other heads.
    cfg, journal = _copy(tmp_path, "forgery", influx.url, db)
    with sqlite3.connect(journal) as conn:
        conn.execute("UPDATE readings SET temp_c = 4.0 WHERE temp_c > 8")
        _forge_evidence(conn, keep_checkpoints=False)
    code, out = _verify(cfg, capsys)
    assert code == 1
    assert "the chain was rewritten" in out
    assert "influx checkpoints" in out

    # 6. Truncate the tail: the last readings and the entries sealing them go.
    cfg, journal = _copy(tmp_path, "truncate", influx.url, db)
    with sqlite3.connect(journal) as conn:
        conn.execute("DELETE FROM readings WHERE temp_c > 8")
        last = conn.execute(
            "SELECT MIN(seq) FROM evidence_chain WHERE json_extract(spans, '$.readings[1]') > 5"
        ).fetchone()[0]
        conn.execute("DELETE FROM evidence_chain WHERE seq >= ?", (last,))
        conn.execute("DELETE FROM evidence_checkpoints WHERE json_extract(body, '$.seq') >= ?",
                     (last,))  # fmt: skip
    code, out = _verify(cfg, capsys)
    assert code == 1
    assert f"the journal's chain ends at entry {last - 1}" in out
    assert "removed from the tail" in out and "readings" in out

    # 7. Key stolen: the forger rewrites and re-signs the journal's checkpoints too. The
    # checkpoints already in InfluxDB still expose the rewrite.
    cfg, journal = _copy(tmp_path, "stolen", influx.url, db)
    from gateway.core.keys import load_private_key
    from gateway.evidence import checkpoint as cp
    from gateway.evidence.chain import load_head

    stolen = load_private_key(journal.parent / "hub-key.pem")
    with sqlite3.connect(journal) as conn:
        conn.execute("UPDATE readings SET temp_c = 4.0 WHERE temp_c > 8")
        _forge_evidence(conn, keep_checkpoints=False)
        forged = cp.make("hub-test", load_head(conn), "stop", time.time_ns(), stolen)
        cp.store(conn, forged)
    code, out = _verify(cfg, capsys)
    assert code == 1
    assert "journal checkpoints" in out
    assert "influx checkpoints" in out and "the chain was rewritten" in out
    # ... and with only the journal (no external copy) the same forgery would pass:
    code, out = _verify(cfg, capsys, "--source", "journal")
    assert code == 0, "documented limit: a stolen key and no external copy"

    # 8. The signed claim report of the intact run: pyHanko's own validation accepts it,
    # verify-report accepts it and rejects an edited PDF or CSV.
    cfg, journal = _copy(tmp_path, "report", influx.url, db)
    out_dir = tmp_path / "report-out"
    trace = ["trace", "SH-9", "--config", str(cfg), "--source", "journal", "--out", str(out_dir)]
    await asyncio.to_thread(main, trace)
    capsys.readouterr()
    # pyHanko's validation runs its own event loop: off this test's loop.
    await asyncio.to_thread(_report_checks, out_dir, journal, cfg, tmp_path, capsys)


def _report_checks(
    out_dir: Path, journal: Path, cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = out_dir / "trace-SH-9.pdf"
    _pyhanko_accepts(pdf)
    # Pages a person can open (kept under pytest's basetemp): the evidence block is shown.
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(out_dir / "page")], check=True)
    assert sorted(out_dir.glob("page*.png"))
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert "Report evidence" in text and "report id" in text and "config fingerprint" in text
    assert "covering checkpoint" in text and "SHA-256 of CSV" in text
    assert "page 1 of " in text
    public = (journal.parent / "hub-key.pub").read_text()
    pub_file = tmp_path / "published.pub"
    pub_file.write_text(public)
    assert (
        main(["verify-report", str(pdf), "--public-key", str(pub_file), "--config", str(cfg)]) == 0
    )
    out = capsys.readouterr().out
    assert "verify-report: OK" in out
    assert "matches the SHA-256 in the signed manifest" in out
    assert "the covering checkpoint (chain entry" in out

    csv_path = out_dir / "trace-SH-9.csv"
    original_csv = csv_path.read_bytes()
    lines = original_csv.decode().splitlines(keepends=True)
    lines[-1] = lines[-1].replace("9", "4", 1)  # the warm reading "fixed"
    assert "".join(lines).encode() != original_csv
    csv_path.write_text("".join(lines))
    assert main(["verify-report", str(pdf), "--public-key", str(pub_file)]) == 1
    assert "trace-SH-9.csv does not match the signed report" in capsys.readouterr().out
    csv_path.write_bytes(original_csv)

    data = bytearray(pdf.read_bytes())
    at = data.find(b"SH-9", len(data) // 4)
    data[at : at + 4] = b"SH-8"
    edited = out_dir / "edited.pdf"
    edited.write_bytes(bytes(data))
    files = ["--csv", str(csv_path), "--json", str(out_dir / "trace-SH-9.json")]
    assert main(["verify-report", str(edited), "--public-key", str(pub_file), *files]) == 1
    assert "FAILED" in capsys.readouterr().out

    other = tmp_path / "other.pub"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.core.keys import public_pem

    other.write_text(public_pem(Ed25519PrivateKey.generate().public_key()))
    assert main(["verify-report", str(pdf), "--public-key", str(other)]) == 1
    assert "not the hub key" in capsys.readouterr().out


def _pyhanko_accepts(pdf: Path) -> None:
    """pyHanko's own validator, trusting the certificate the hub key made."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    with pdf.open("rb") as fh:
        reader = PdfFileReader(fh)
        (sig,) = reader.embedded_signatures
        status = validate_pdf_signature(sig, ValidationContext(trust_roots=[sig.signer_cert]))
        assert status.bottom_line, status.pretty_print_details()
        assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
        assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"  # PAdES
