"""The package an operator installs: ``python -m build`` makes a wheel and an sdist, and the
wheel alone (no source tree anywhere on the path) gives a working ``coldchain``.

Slow (a fresh venv gets every dependency from the package index or pip's cache), so marked
integration; it is the only test that sees what the wheel really ships.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _run(argv: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    # A clean environment for the child: no PYTHONPATH pointing back at the checkout.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


def test_build_makes_a_wheel_and_an_sdist_with_the_example(dist: Path) -> None:
    (wheel,) = dist.glob("coldchain_gateway-*.whl")
    (sdist,) = dist.glob("coldchain_gateway-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "gateway/cli.py" in names
    assert "drivers/registry.py" in names
    assert any(n.endswith(".data/data/share/coldchain/examples/gateway.toml") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    assert any(m.endswith("/examples/gateway.toml") for m in members)
    assert any(m.endswith("/pyproject.toml") for m in members)


def test_the_wheel_alone_gives_a_working_coldchain(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("coldchain_gateway-*.whl")
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    pip = _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    cwd = tmp_path / "elsewhere"  # not the checkout: nothing imports from the source tree
    cwd.mkdir()
    coldchain = str(venv / "bin" / "coldchain")
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import gateway; print(gateway.__file__)"], cwd
    )
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout and str(ROOT) not in where.stdout
    helped = _run([coldchain, "--help"], cwd)
    assert helped.returncode == 0, helped.stderr
    assert "check-config" in helped.stdout and "exit codes" in helped.stdout
    example = venv / "share" / "coldchain" / "examples" / "gateway.toml"
    assert example.is_file()
    checked = _run([coldchain, "check-config", str(example)], cwd)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{example}: OK" in checked.stdout
