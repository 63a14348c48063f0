"""Ed25519 key handling shared by the hub key (evidence) and device keys (signed commands).

One place for: making a key pair, writing the private part so only its owner can read it
(0600, created exclusively, never through a symlink), loading it from a file or a systemd
credential (``LoadCredential=coldchain-hub-key:...`` puts it under
``$CREDENTIALS_DIRECTORY``), the public key's raw/base64/PEM forms and its fingerprint,
and signing and checking bytes. ``cryptography`` is imported lazily: ``coldchain run``
pays for it only when evidence is on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Final

from gateway.core.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

HUB_KEY_CREDENTIAL: Final = "coldchain-hub-key"
"""Name of the systemd credential that may hold the hub's private key (PEM)."""
FINGERPRINT_HEX: Final = 16


class KeyError_(ConfigError):
    """A key that cannot be made, read or used (the message says which file and why)."""


def fingerprint(public_raw: bytes) -> str:
    """First 16 hex digits of SHA-256 of the raw 32-byte public key (what people compare)."""
    return hashlib.sha256(public_raw).hexdigest()[:FINGERPRINT_HEX]


def public_raw(key: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of a public key."""
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_b64(key: Ed25519PublicKey) -> str:
    """Base64 of the raw public key (the form published and enrolled)."""
    return base64.b64encode(public_raw(key)).decode("ascii")


def public_pem(key: Ed25519PublicKey) -> str:
    """The public key as PEM SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from base64 of its 32 raw bytes or from PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        try:
            loaded = serialization.load_pem_public_key(stripped.encode())
        except ValueError as exc:
            msg = f"not a PEM public key: {exc}"
            raise KeyError_(msg) from exc
        if not isinstance(loaded, Ed25519PublicKey):
            msg = "the PEM key is not an Ed25519 key"
            raise KeyError_(msg)
        return loaded
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = "a public key must be base64 (32 raw bytes) or PEM"
        raise KeyError_(msg) from exc
    if len(raw) != 32:
        msg = f"an Ed25519 public key has 32 bytes, got {len(raw)}"
        raise KeyError_(msg)
    return Ed25519PublicKey.from_public_bytes(raw)


def generate_private_key(path: Path) -> Ed25519PrivateKey:
    """Make a key pair and write the private part (PKCS#8 PEM) to a new 0600 file.

    Refuses to overwrite anything at path (a key in use must be rotated, not clobbered).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError as exc:
        msg = f"{path} exists; not overwriting a private key"
        raise KeyError_(msg) from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return private


def private_key_source(path: Path, credential: str = HUB_KEY_CREDENTIAL) -> Path:
    """The file to read: the systemd credential when one is handed in, else path."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        candidate = Path(directory) / credential
        if candidate.is_file():
            return candidate
    return path


def load_private_key(path: Path, credential: str = HUB_KEY_CREDENTIAL) -> Ed25519PrivateKey:
    """Read the private key (a systemd credential first, then path); refuse a readable one.

    A key file that its group or others may read is refused: a copied key lets anyone
    sign checkpoints in the hub's name (docs/evidence.md).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    source = private_key_source(path, credential)
    try:
        info = source.stat()
        data = source.read_bytes()
    except OSError as exc:
        msg = f"cannot read the hub key {source}: {exc.strerror or exc} (run `coldchain keys init`)"
        raise KeyError_(msg) from exc
    if source == path and stat.S_IMODE(info.st_mode) & 0o077:
        msg = (
            f"hub key {source} is readable by others (mode {stat.S_IMODE(info.st_mode):o});"
            " chmod 600 it, or hand it in as a systemd credential"
        )
        raise KeyError_(msg)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        msg = f"hub key {source} is not a PEM private key: {exc}"
        raise KeyError_(msg) from exc
    if not isinstance(key, Ed25519PrivateKey):
        msg = f"hub key {source} is not an Ed25519 key"
        raise KeyError_(msg)
    return key


def verify_signature(public: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """True when signature is the key's Ed25519 signature over data."""
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True
