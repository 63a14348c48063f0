"""Claim report outputs: long values never cost a report; files whole, 0640, no symlinks.

The review made ``coldchain trace`` fail with reportlab's LayoutError through a 70 KB
acknowledgement name (no report for any shipment whose window held that alert), and a
root run of trace overwrite another file through a symlink planted at the output path.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.trace.cli import write_outputs
from tests.gateway.trace.test_analysis import MIN, STEPS, T0, _alert, readings, trace


def _pdf_text(path: Path) -> str:
    result = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _pdftotext() -> None:
    if subprocess.run(["which", "pdftotext"], capture_output=True).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("pdftotext missing in CI (apt-get install poppler-utils)")
        pytest.skip("pdftotext not installed")


def test_a_500_character_note_and_a_70_kb_ack_name_still_give_a_report(tmp_path: Path) -> None:
    _pdftotext()
    note = "temperature logger checked at the dock " * 13  # ~500 characters
    steps = [replace(STEPS[0], note=note[:500]), *STEPS[1:]]
    huge = replace(_alert("critical", True), acknowledged_by="x" * 70_000)
    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN), steps=steps, alerts=[huge])
    paths = write_outputs(result, tmp_path / "out")
    text = _pdf_text(paths["pdf"])
    assert "VERDICT" in text
    flat = "".join(text.split())  # table cells wrap: compare without the line breaks
    assert "morecharactersintheJSONsummary" in flat
    assert "temperatureloggercheckedatthedock" in flat
    # The JSON keeps the whole value.
    assert "x" * 70_000 in paths["json"].read_text()


def test_outputs_replace_a_planted_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "etc-shadow"
    victim.write_text("root:secret\n")
    out = tmp_path / "out"
    out.mkdir()
    for suffix in ("pdf", "csv", "json"):
        (out / f"trace-SH-1.{suffix}").symlink_to(victim)
    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN))
    paths = write_outputs(result, out)
    assert victim.read_text() == "root:secret\n"
    for path in paths.values():
        assert not path.is_symlink()
        assert path.stat().st_size > 0


def test_outputs_are_0640_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        paths = write_outputs(trace(readings(T0 - 15 * MIN, T0 + 350 * MIN)), tmp_path)
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in paths.values()} == {oct(0o640)}
