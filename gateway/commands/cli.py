"""Device keys that sign commands, as actions of ``coldchain keys`` (gateway/evidence/cli.py).

    coldchain keys generate scanner-07 --out scanner-07.key     # on a trusted machine
    coldchain keys enroll scanner-07 --role custody --public-key <base64 or @PEM file>
    coldchain keys list
    coldchain keys revoke scanner-07

The hub key (``keys init``/``show``) and these share ``gateway.core.keys`` (parsing,
fingerprints, private key files). The daemon picks up an enrolment or revocation at the
next command (no restart). Exit codes: 0 done, 1 refused (the message says why), 2 usage
or config error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.commands.keyring import ROLES, KeyRing
from gateway.config import load_config
from gateway.core.clock import iso_utc
from gateway.core.errors import ConfigError
from gateway.core.text import printable

Action = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _add_enroll(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="key name, e.g. scanner-07 (letters, digits, _.:-)")
    p.add_argument(
        "--role",
        action="append",
        choices=ROLES,
        required=True,
        help="command it may sign: custody (scanners, WMS) or ack (planner); repeatable",
    )
    p.add_argument(
        "--public-key",
        required=True,
        help="the Ed25519 public key: base64 of its 32 bytes, or @FILE with base64 or PEM",
    )
    p.add_argument("--description", default="", help="where the key lives, who holds it")


def _add_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the enrolled key's name")


def _add_nothing(p: argparse.ArgumentParser) -> None:
    del p


def _add_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the device the key is for (printed with the public key)")
    p.add_argument("--out", required=True, help="file for the private key (PEM, mode 0600)")


def _ring(args: argparse.Namespace) -> KeyRing | None:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: config rejected\n{printable(exc.render())}", file=sys.stderr)
        return None
    return KeyRing.load(config.commands.keys_path(config.journal.path))


def _run(body: Callable[[KeyRing, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            ring = _ring(args)
            if ring is None:
                return 2
            return body(ring, args)
        except (ConfigError, OSError) as exc:  # KeyFileError and KeyError_ are ConfigErrors
            print(f"coldchain keys: {printable(exc)}", file=sys.stderr)
            return 1

    return run


def _enroll(ring: KeyRing, args: argparse.Namespace) -> int:
    from gateway.core.keys import parse_public_key, public_raw

    text = args.public_key
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        raw = public_raw(parse_public_key(text))
    except ValueError as exc:  # 32 bytes that are no Ed25519 point
        print(f"coldchain keys: not an Ed25519 public key: {exc}", file=sys.stderr)
        return 1
    key = ring.enroll(args.name, args.role, raw, time.time_ns(), args.description)
    ring.save()
    print(
        f"enrolled {key.name} for {', '.join(key.roles)} (fingerprint {key.fingerprint()})"
        f" in {ring.path}"
    )
    return 0


def _list(ring: KeyRing, args: argparse.Namespace) -> int:
    del args
    keys = list(ring)
    if not keys:
        print(f"no device keys enrolled in {ring.path}")
        return 0
    for key in keys:
        state = "active" if key.active else f"revoked {iso_utc(key.revoked_ns or 0)}"
        cells = (
            key.name,
            ",".join(key.roles),
            key.fingerprint(),
            f"enrolled {iso_utc(key.enrolled_ns)}",
            state,
            printable(key.description, 120),
        )
        print("\t".join(cells))
    return 0


def _revoke(ring: KeyRing, args: argparse.Namespace) -> int:
    key = ring.revoke(args.name, time.time_ns())
    ring.save()
    print(f"revoked {key.name} at {iso_utc(key.revoked_ns or 0)}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from gateway.core.keys import KeyError_, generate_private_key, public_b64

    try:
        private = generate_private_key(Path(args.out))
    except (KeyError_, OSError) as exc:
        print(f"coldchain keys: {printable(exc)}", file=sys.stderr)
        return 1
    print(f"private key for {args.name} written to {args.out} (mode 0600); enroll this:")
    print(public_b64(private.public_key()))
    return 0


KEYS_ACTIONS: dict[str, tuple[str, Action]] = {
    "enroll": ("allow a device key to sign commands", (_add_enroll, _run(_enroll))),
    "list": ("device keys, active and revoked", (_add_nothing, _run(_list))),
    "revoke": ("refuse a device key's commands from now on", (_add_name, _run(_revoke))),
    "generate": (
        "make a device key pair (private key to --out, 0600)",
        (_add_generate, _generate),
    ),
}
"""The device-key actions of ``coldchain keys`` (registered by gateway.cli)."""
