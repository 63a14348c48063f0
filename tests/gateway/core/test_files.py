"""write_atomic: whole or not at all, never through a symlink, modes whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.core.files import PRIVATE, SHARED, UnsafePath, write_atomic


def test_a_planted_symlink_is_replaced_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "report.pdf"
    link.symlink_to(victim)
    write_atomic(link, b"report")
    assert victim.read_text() == "keep me"
    assert not link.is_symlink()
    assert link.read_bytes() == b"report"


@pytest.mark.parametrize("mode", [PRIVATE, SHARED])
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_modes_hold_whatever_the_umask(tmp_path: Path, mode: int, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "f", b"x", mode)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_replacing_keeps_no_temp_files_and_refuses_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    write_atomic(target, b"1")
    write_atomic(target, b"2")
    assert target.read_bytes() == b"2"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    (tmp_path / "dir").mkdir()
    with pytest.raises(UnsafePath):
        write_atomic(tmp_path / "dir", b"x")
