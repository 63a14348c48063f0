"""Signed claim reports: a PAdES signature by the hub key over the PDF and its manifest.

The PDF carries an embedded ``coldchain-report.json`` (the *manifest*: report id, software
version, config fingerprint, the covering signed checkpoint, SHA-256 of the CSV and JSON
the report was made with) and is signed with pyHanko (PAdES baseline, Ed25519) using a
self-signed X.509 certificate of the hub key. So a recipient needs only the report, its
CSV/JSON and the hub's published public key: ``coldchain verify-report FILE`` (or any PAdES
validator) checks the signature covers the whole file, that the signer's key is the
hub's, that the CSV/JSON hash to what the manifest says, and that the checkpoint is signed
by the same key (and, given the hub's journal, that the chain holds it).

pyHanko is imported only here, lazily (``coldchain run`` never loads it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from gateway.evidence import checkpoint as cp

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

MANIFEST_NAME: Final = "coldchain-report.json"
MANIFEST_FORMAT: Final = "coldchain-report/1"
FIELD_NAME: Final = "HubSignature"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def new_report_id(hub: str, shipment: str, now_ns: int) -> str:
    """A report id a person can quote: hub, shipment, UTC time, random suffix."""
    stamp = dt.datetime.fromtimestamp(now_ns / 1e9, tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{hub}-{shipment}-{stamp}-{uuid.uuid4().hex[:8]}"


@dataclass(slots=True)
class Manifest:
    """What the signed report states about itself."""

    report_id: str
    hub: str
    shipment: str
    generated_ns: int
    software_version: str
    config_fingerprint: str
    checkpoint: Mapping[str, object] | None
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    key: str = ""

    def to_json(self) -> dict[str, object]:
        """The manifest document."""
        return {
            "format": MANIFEST_FORMAT,
            "report_id": self.report_id,
            "hub": self.hub,
            "shipment": self.shipment,
            "generated_ns": self.generated_ns,
            "software_version": self.software_version,
            "config_fingerprint": self.config_fingerprint,
            "checkpoint": dict(self.checkpoint) if self.checkpoint is not None else None,
            "files": dict(sorted(self.files.items())),
            "key": self.key,
        }


def hub_certificate(private: Ed25519PrivateKey, hub: str) -> x509.Certificate:
    """A self-signed certificate of the hub key (the key is what is trusted, not a CA)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from gateway.core.keys import fingerprint, public_raw

    public = private.public_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"coldchain hub {hub}"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "claim evidence"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, fingerprint(public_raw(public))),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(int.from_bytes(hashlib.sha256(public_raw(public)).digest()[:15], "big"))
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * 20))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(private, algorithm=None)
    )


def sign_pdf(
    pdf: Path, manifest: Manifest, private: Ed25519PrivateKey, *, location: str = ""
) -> None:
    """Embed the manifest and sign the PDF in place (PAdES, hub key)."""
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.pdf_utils import embed
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    from gateway.core.keys import fingerprint, public_raw

    cert = hub_certificate(private, manifest.hub)
    manifest.key = fingerprint(public_raw(private.public_key()))
    asn1_cert = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    asn1_key = asn1_keys.PrivateKeyInfo.load(
        private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signer = signers.SimpleSigner(
        signing_cert=asn1_cert,
        signing_key=asn1_key,
        cert_registry=SimpleCertificateStore.from_certs([asn1_cert]),  # type: ignore[no-untyped-call]
    )
    data = cp.canonical_json(manifest.to_json())
    with pdf.open("rb") as fh:
        writer = IncrementalPdfFileWriter(io.BytesIO(fh.read()))
    embed.embed_file(
        writer,
        embed.FileSpec(
            file_spec_string=MANIFEST_NAME,
            file_name=MANIFEST_NAME,
            embedded_data=embed.EmbeddedFileObject.from_file_data(
                writer, data=data, mime_type="application/json"
            ),
            description="coldchain report manifest: id, version, config, checkpoint, file hashes",
        ),
    )
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME,
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=f"claim report {manifest.report_id}",
        location=location or f"hub {manifest.hub}",
    )
    out = signers.sign_pdf(writer, meta, signer=signer)
    tmp = pdf.with_suffix(".pdf.tmp")
    tmp.write_bytes(out.getvalue())
    tmp.replace(pdf)


# -- verification ----------------------------------------------------------------------------


@dataclass(slots=True)
class ReportCheck:
    """What verify-report found; ``problems`` empty means the report is what it claims."""

    manifest: dict[str, Any] | None = None
    signer_key: str = ""
    pyhanko_summary: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems and self.manifest is not None


def _embedded_manifest(reader: Any) -> dict[str, Any] | None:
    root = reader.root
    try:
        names = root["/Names"]["/EmbeddedFiles"]["/Names"]
    except KeyError:
        return None
    for i in range(0, len(names), 2):
        if str(names[i]) == MANIFEST_NAME:
            spec = names[i + 1].get_object()
            stream = spec["/EF"]["/F"].get_object()
            doc = json.loads(stream.data)
            return doc if isinstance(doc, dict) else None
    return None


def check_report(
    pdf: Path,
    public: Ed25519PublicKey | None,
    files: Mapping[str, Path],
) -> ReportCheck:
    """Check a signed report: signature (pyHanko), signer key, manifest, file hashes."""
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    from gateway.core.keys import fingerprint, public_raw

    result = ReportCheck()
    data = pdf.read_bytes()
    try:
        reader = PdfFileReader(io.BytesIO(data))
        signatures = reader.embedded_signatures
    except Exception as exc:  # pyHanko raises several types for a damaged file
        result.problems.append(f"not a readable PDF: {exc}")
        return result
    if not signatures:
        result.problems.append("the PDF carries no signature")
        return result
    sig = signatures[0]
    cert = sig.signer_cert
    raw_key = bytes(cert.public_key["public_key"])
    result.signer_key = fingerprint(raw_key)
    context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(cert.dump())])
    status = validate_pdf_signature(sig, context)
    result.pyhanko_summary = status.summary()
    if not status.intact or not status.valid:
        result.problems.append(
            "the signature does not match the PDF's bytes (edited after signing)"
        )
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        result.problems.append(
            f"the signature does not cover the whole file ({status.coverage}):"
            " something was appended after signing"
        )
    if public is None:
        result.notes.append(
            f"no hub public key given: the signer key {result.signer_key} was not compared"
        )
    elif public_raw(public) != raw_key:
        result.problems.append(
            f"signed by key {result.signer_key}, not the hub key {fingerprint(public_raw(public))}"
        )
    manifest = _embedded_manifest(reader)
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT:
        result.problems.append(f"no {MANIFEST_NAME} manifest in the PDF")
        return result
    result.manifest = manifest
    hashes = manifest.get("files") or {}
    for name, path in files.items():
        expected = hashes.get(name)
        if expected is None:
            result.problems.append(f"the manifest has no SHA-256 for {name}")
        elif not path.is_file():
            result.notes.append(f"{name} file {path} not found: not checked")
        elif sha256_file(path) != expected:
            result.problems.append(
                f"{path.name} does not match the signed report (SHA-256 differs: edited)"
            )
        else:
            result.notes.append(f"{path.name} matches the SHA-256 in the signed manifest")
    point = manifest.get("checkpoint")
    if point is None:
        result.notes.append("the report names no covering checkpoint")
    else:
        try:
            checkpoint = cp.from_json(point)
        except cp.CheckpointError as exc:
            result.problems.append(f"covering checkpoint unreadable: {exc}")
        else:
            key = public
            if key is None:
                from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

                key = Ed25519PublicKey.from_public_bytes(raw_key)
            if not checkpoint.verify(key):
                result.problems.append("the covering checkpoint is not signed by the hub key")
    return result
