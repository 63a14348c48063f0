"""Throwaway TLS material for tests: two unrelated CAs, server and client certificates.

Made with the ``openssl`` command line tool (no Python dependency): EC P-256 keys,
certificates valid for two days, with the extensions a strict verifier wants (basic
constraints, key usage, extended key usage, subject and authority key identifiers).

- ``ca``: the test CA; ``server`` is signed by it for ``127.0.0.1`` and ``localhost``
  (subjectAltName IP and DNS), ``client`` (CN ``tls-client``) is signed by it for
  client authentication.
- ``other_ca``: a second, unrelated CA; ``other_server`` is signed by it for the same
  names, so a client trusting only ``ca`` must refuse it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLIENT_CN = "tls-client"
DAYS = "2"

_CA_EXTENSIONS = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TlsMaterial:
    """Everything :func:`make_tls_material` wrote."""

    directory: Path
    ca: KeyPair
    server: KeyPair
    client: KeyPair
    other_ca: KeyPair
    other_server: KeyPair


def openssl_available() -> bool:
    """True when the openssl command line tool is installed."""
    return shutil.which("openssl") is not None


def _openssl(*args: str) -> None:
    result = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        msg = f"openssl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
        raise RuntimeError(msg)


def _key(path: Path) -> None:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
    )
    path.chmod(0o600)


def _serial() -> str:
    return f"0x{secrets.token_hex(16)}"


def make_ca(directory: Path, name: str, common_name: str) -> KeyPair:
    """A self-signed CA certificate and key as ``<name>.crt`` / ``<name>.key``."""
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    ext = directory / f"{name}.ext"
    ext.write_text("[v3_ca]\n" + _CA_EXTENSIONS, encoding="utf-8")
    _key(pair.key)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(pair.key),
        "-subj",
        f"/O=coldchain tests/CN={common_name}",
        "-days",
        DAYS,
        "-set_serial",
        _serial(),
        "-config",
        str(ext),
        "-extensions",
        "v3_ca",
        "-out",
        str(pair.cert),
    )
    return pair


def make_leaf(
    directory: Path,
    name: str,
    ca: KeyPair,
    common_name: str,
    *,
    server: bool,
) -> KeyPair:
    """A certificate signed by ca: for 127.0.0.1/localhost (server) or client auth."""
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    text = _LEAF_EXTENSIONS.format(usage="serverAuth" if server else "clientAuth")
    if server:
        text += "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    ext.write_text(text, encoding="utf-8")
    _key(pair.key)
    _openssl(
        "req",
        "-new",
        "-key",
        str(pair.key),
        "-subj",
        f"/O=coldchain tests/CN={common_name}",
        "-out",
        str(csr),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-set_serial",
        _serial(),
        "-days",
        DAYS,
        "-extfile",
        str(ext),
        "-out",
        str(pair.cert),
    )
    return pair


def make_tls_material(directory: Path) -> TlsMaterial:
    """Write both CAs and their certificates into directory (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca", "coldchain test CA")
    other_ca = make_ca(directory, "other-ca", "unrelated test CA")
    return TlsMaterial(
        directory=directory,
        ca=ca,
        server=make_leaf(directory, "server", ca, "localhost", server=True),
        client=make_leaf(directory, "client", ca, CLIENT_CN, server=False),
        other_ca=other_ca,
        other_server=make_leaf(directory, "other-server", other_ca, "localhost", server=True),
    )
