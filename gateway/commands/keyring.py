"""Device keys that may sign commands: enrolled, listed and revoked with ``coldchain keys``.

A scanner, a WMS or the network planner holds an Ed25519 private key; the hub holds its
public key in the key file (``commands.keys_file``, default ``command-keys.json`` next to
the journal) under a name (``scanner-07``) and the commands it may sign (``custody``,
``ack``). Revoking keeps the entry with its revocation time, so a record signed before
can still be told from a forgery made after.

The file is JSON, written whole through a temp file and ``os.replace`` with mode 0640
(the daemon's group reads it; only the admin writes it). The daemon re-reads it when its
modification time or size changes, so an enrolment or revocation takes effect at the next
command without a restart.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Final, Literal, get_args

from gateway.core.errors import ConfigError
from gateway.core.files import SHARED, write_atomic
from gateway.core.text import text_problem

Role = Literal["custody", "ack"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
KEY_NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
FILE_VERSION: Final = 1


class KeyFileError(ConfigError):
    """A key file that cannot be read, or an enrolment that is refused."""


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """One enrolled public key."""

    name: str
    roles: tuple[str, ...]
    public_key: str  # raw 32-byte Ed25519 public key, base64
    enrolled_ns: int
    revoked_ns: int | None = None
    description: str = ""

    @property
    def active(self) -> bool:
        """True until revoked."""
        return self.revoked_ns is None

    def public_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return base64.b64decode(self.public_key, validate=True)

    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256 of the raw key: what to compare on the device."""
        from gateway.core.keys import fingerprint

        return fingerprint(self.public_bytes())


class KeyRing:
    """The enrolled device keys, loaded from and saved to one JSON file."""

    def __init__(self, path: str | Path, keys: Iterable[DeviceKey] = ()) -> None:
        self.path = Path(path)
        self._keys: dict[str, DeviceKey] = {k.name: k for k in keys}
        self._stamp: tuple[int, int] | None = None

    @classmethod
    def load(cls, path: str | Path) -> KeyRing:
        """Read the key file; a missing file is an empty ring, a broken one a KeyFileError."""
        ring = cls(path)
        ring.refresh()
        return ring

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last read; True when it was re-read."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            changed = self._stamp is not None or bool(self._keys)
            self._keys, self._stamp = {}, None
            return changed
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return False
        self._keys = {k.name: k for k in _read(self.path)}
        self._stamp = stamp
        return True

    def __iter__(self) -> Iterator[DeviceKey]:
        return iter(sorted(self._keys.values(), key=lambda k: k.name))

    def get(self, name: str) -> DeviceKey | None:
        """The key enrolled under name (active or revoked), if any."""
        return self._keys.get(name)

    def enroll(
        self, name: str, roles: Iterable[str], public_key: bytes, now_ns: int, description: str = ""
    ) -> DeviceKey:
        """Add a key (or replace a revoked one); an active key of that name is refused."""
        if not KEY_NAME_PATTERN.fullmatch(name):
            msg = f"key name {name!r}: letters, digits and _.:- only, up to 64 characters"
            raise KeyFileError(msg)
        wanted = tuple(sorted(set(roles)))
        unknown = [r for r in wanted if r not in ROLES]
        if not wanted or unknown:
            msg = f"roles must be some of {', '.join(ROLES)}, got {', '.join(wanted) or 'none'}"
            raise KeyFileError(msg)
        problem = text_problem(description) if description else None
        if problem is not None or len(description) > 200:
            msg = f"description: {problem or 'longer than 200 characters'}"
            raise KeyFileError(msg)
        existing = self._keys.get(name)
        if existing is not None and existing.active:
            msg = f"key {name!r} is already enrolled; revoke it first to replace it"
            raise KeyFileError(msg)
        encoded = base64.b64encode(public_key).decode()
        for other in self._keys.values():
            if other.active and other.public_key == encoded:
                msg = f"this public key is already enrolled as {other.name!r}"
                raise KeyFileError(msg)
        key = DeviceKey(name, wanted, encoded, now_ns, None, description)
        self._keys[name] = key
        return key

    def revoke(self, name: str, now_ns: int) -> DeviceKey:
        """Mark a key revoked from now on; commands it signs are refused from then."""
        existing = self._keys.get(name)
        if existing is None:
            msg = f"no key named {name!r}"
            raise KeyFileError(msg)
        if not existing.active:
            return existing
        revoked = replace(existing, revoked_ns=now_ns)
        self._keys[name] = revoked
        return revoked

    def save(self) -> None:
        """Write the file whole (temp file + os.replace, mode 0640)."""
        document = {
            "version": FILE_VERSION,
            "keys": [
                {**asdict(k), "roles": list(k.roles)}
                for k in sorted(self._keys.values(), key=lambda k: k.name)
            ],
        }
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        write_atomic(self.path, text.encode("utf-8"), SHARED)
        info = self.path.stat()
        self._stamp = (info.st_mtime_ns, info.st_size)


def _read(path: Path) -> list[DeviceKey]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"cannot read key file {path}: {exc}"
        raise KeyFileError(msg) from exc
    if not isinstance(document, dict) or document.get("version") != FILE_VERSION:
        msg = f"key file {path}: not a version {FILE_VERSION} key file"
        raise KeyFileError(msg)
    keys: list[DeviceKey] = []
    for index, entry in enumerate(document.get("keys", [])):
        try:
            key = DeviceKey(
                name=str(entry["name"]),
                roles=tuple(str(r) for r in entry["roles"]),
                public_key=str(entry["public_key"]),
                enrolled_ns=int(entry["enrolled_ns"]),
                revoked_ns=None if entry.get("revoked_ns") is None else int(entry["revoked_ns"]),
                description=str(entry.get("description", "")),
            )
            if len(key.public_bytes()) != 32:
                raise ValueError("public key is not 32 bytes")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            msg = f"key file {path}: keys[{index}] is malformed ({exc})"
            raise KeyFileError(msg) from exc
        keys.append(key)
    return keys
