"""``coldchain discover``: find the sensors a hub can read and print config for them.

Each kind of input is one module here with ``add_arguments(parser)`` and
``discover(args, out) -> int``; this module wires them into one subcommand. Wired
sensors (serial ports, Modbus slaves on a line, 1-Wire probes) are in :mod:`.wired`,
sensors publishing on an MQTT broker (``--mqtt``) in :mod:`.mqtt`.
Every snippet printed is meant to be pasted into the config as it is and passes
``coldchain check-config`` (with the zone it names).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from gateway.apps.discover import mqtt, wired


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``discover`` on the coldchain CLI."""
    p = sub.add_parser(
        "discover",
        help="find sensors (wired: serial, Modbus, 1-Wire; or --mqtt: a broker's topics) and"
        " print config",
    )
    p.add_argument(
        "--zone", default="cold-room", help="zone id the printed [[sensors]] entries name"
    )
    wired.add_arguments(p)
    mqtt.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the discovery the arguments ask for; 0 when it could look.

    ``--mqtt`` listens on a broker (:mod:`.mqtt`); without it the wired sensors are listed.
    """
    if getattr(args, "mqtt", None) is not None:
        return mqtt.discover(args, out or sys.stdout)
    return wired.discover(args, out or sys.stdout)
