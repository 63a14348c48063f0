"""requirements.lock pins every runtime dependency with hashes, inside pyproject's ranges.

systemd/install.sh installs the Pi's dependencies from it with --require-hashes, so what
the tests ran is what runs at the hub. Regenerate it after changing a dependency:
``pip-compile --generate-hashes --strip-extras --output-file requirements.lock pyproject.toml``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _locked() -> dict[str, tuple[Version, int]]:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    out: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==([^\s\\]+)", block)
        if match:
            name = canonicalize_name(match.group(1))
            out[name] = (Version(match.group(2)), block.count("--hash=sha256:"))
    return out


def test_every_runtime_dependency_is_pinned_with_hashes_inside_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    locked = _locked()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: regenerate it"
        version, hashes = locked[name]
        assert version in requirement.specifier, f"{name} {version} outside {requirement}"
        assert hashes >= 1, f"{name} has no hash"
    assert all(hashes >= 1 for _, hashes in locked.values())
