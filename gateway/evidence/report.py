"""The claim report's evidence: its manifest, the rows the PDF shows, and its signature.

Used by ``coldchain trace`` (``gateway.trace.cli.write_outputs``) once the CSV and JSON are
written: the manifest names the report (id), the software and config that made it, the
latest signed checkpoint of the hub's chain (the *covering* checkpoint when it was made
after custody ended) and the SHA-256 of the CSV and JSON; the PDF shows it and, when the
hub key can be read, carries it embedded and PAdES-signed (``report_sign``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.core.clock import iso_utc
from gateway.evidence import checkpoint as cp
from gateway.evidence.report_sign import Manifest, new_report_id, sha256_file

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

log = logging.getLogger(__name__)


def latest_checkpoint(journal_path: Path) -> cp.Checkpoint | None:
    """The newest signed checkpoint in the journal (read-only), or None."""
    from gateway.core.errors import JournalError
    from gateway.journal.store import Journal

    if not journal_path.exists():
        return None
    try:
        journal = Journal.open_readonly(journal_path)
    except JournalError:
        return None
    try:
        row = journal.connection.execute(
            "SELECT id FROM evidence_checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        found = cp.stored_after(journal.connection, int(row[0]) - 1, 1)
        return found[0] if found else None
    except Exception:  # an old journal without the table
        return None
    finally:
        journal.close()


def make_manifest(config: GatewayConfig, result: Any, files: Mapping[str, Path]) -> Manifest:
    """The manifest of one report (the CSV and JSON must be written already)."""
    from gateway.evidence.service import fingerprint_of

    now = time.time_ns()
    point = latest_checkpoint(Path(config.journal.path))
    return Manifest(
        report_id=new_report_id(config.hub.id, result.shipment, now),
        hub=config.hub.id,
        shipment=result.shipment,
        generated_ns=now,
        software_version=f"coldchain-gateway {__version__}",
        config_fingerprint=fingerprint_of(config),
        checkpoint=point.to_json() if point is not None else None,
        files={name: sha256_file(path) for name, path in files.items()},
    )


def manifest_rows(manifest: Manifest, custody_end_ns: int | None = None) -> list[tuple[str, str]]:
    """What the PDF prints about itself."""
    point = manifest.checkpoint
    if point is None:
        covering = "none: the journal holds no signed checkpoint"
    else:
        key = point["key"] or "unsigned"
        covering = (
            f"chain entry {point['seq']} at {iso_utc(int(str(point['at_ns'])))}"
            f" ({point['reason']}), head {str(point['head'])[:16]}..., key {key}"
        )
    rows = [
        ("report id", manifest.report_id),
        ("software", manifest.software_version),
        ("config fingerprint", manifest.config_fingerprint),
        ("covering checkpoint", covering),
    ]
    rows += [
        (f"SHA-256 of {name.upper()}", digest) for name, digest in sorted(manifest.files.items())
    ]
    return rows


def sign_if_keyed(config: GatewayConfig, pdf: Path, manifest: Manifest) -> bool:
    """Sign the PDF with the hub key; False (and a warning) when the key cannot be read."""
    from gateway.core.keys import KeyError_, load_private_key
    from gateway.evidence.report_sign import sign_pdf

    try:
        key = load_private_key(config.evidence.key_path(config.journal.path))
    except KeyError_ as exc:
        log.warning("claim report NOT signed: %s", exc)
        return False
    sign_pdf(pdf, manifest, key)
    return True
