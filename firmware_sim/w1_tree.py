"""A w1 sysfs tree laid out as the Linux kernel lays it out, for tests and the demo.

::

    <root>/devices/w1_bus_master1/w1_master_slaves          one device id per line
    <root>/devices/w1_bus_master1/28-0316a2794cff/w1_slave  scratchpad + crc + t=
    <root>/devices/w1_bus_master1/28-0316a2794cff/temperature
    <root>/devices/w1_bus_master1/28-0316a2794cff/name
    <root>/bus/w1/devices/28-0316a2794cff -> ../../../devices/w1_bus_master1/28-...
    <root>/bus/w1/devices/w1_bus_master1 -> ../../../devices/w1_bus_master1

Point the driver's ``sysfs_root`` at ``<root>/bus/w1/devices``. The file contents are
what w1_therm.c writes (see drivers/onewire/w1.py); a device that "disappears" loses its
directory and link, as when the kernel drops a slave that stopped answering searches.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from drivers.onewire.w1 import (
    crc8_maxim,
    ds18b20_scratchpad,
    kernel_millidegrees,
    render_w1_slave,
)


class W1Tree:
    """One bus master with thermometers whose readings the caller sets."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.master = root / "devices" / "w1_bus_master1"
        self.devices_dir = root / "bus" / "w1" / "devices"
        self.master.mkdir(parents=True, exist_ok=True)
        self.devices_dir.mkdir(parents=True, exist_ok=True)
        (self.master / "w1_master_name").write_text("w1_bus_master1\n")
        link = self.devices_dir / "w1_bus_master1"
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(self.master, self.devices_dir))
        self._stored: dict[str, Path] = {}
        self._update_slaves()

    @property
    def sysfs_root(self) -> str:
        """The path to give the driver."""
        return str(self.devices_dir)

    def _update_slaves(self) -> None:
        ids = sorted(p.name for p in self.master.iterdir() if p.is_dir() and "-" in p.name)
        text = "".join(f"{i}\n" for i in ids) if ids else "not found.\n"
        (self.master / "w1_master_slaves").write_text(text)
        (self.master / "w1_master_slave_count").write_text(f"{len(ids)}\n")

    def add(self, device: str, temp_c: float = 4.0) -> None:
        """Attach a thermometer reading ``temp_c``."""
        d = self.master / device
        d.mkdir(exist_ok=True)
        (d / "name").write_text(device + "\n")
        link = self.devices_dir / device
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(d, self.devices_dir))
        self._update_slaves()
        self.set_temp(device, temp_c)

    def set_temp(self, device: str, temp_c: float) -> None:
        """Its next read gives ``temp_c`` (a DS18B20 scratchpad with a good CRC)."""
        pad = ds18b20_scratchpad(temp_c)
        t_milli = kernel_millidegrees(pad)
        self.set_text(device, render_w1_slave(pad, t_milli), f"{t_milli}\n")

    def set_crc_error(self, device: str, temp_c: float = 4.0) -> None:
        """Its next read has a scratchpad byte flipped on the wire: ``crc=.. NO``."""
        pad = bytearray(ds18b20_scratchpad(temp_c))
        pad[1] ^= 0x10
        t_milli = kernel_millidegrees(bytes(pad))
        self.set_text(device, render_w1_slave(bytes(pad), t_milli), f"{t_milli}\n")

    def set_max31850(self, device: str, temp_c: float, fault: int = 0) -> None:
        """A MAX31850 (family 3b) reading ``temp_c``; ``fault`` 1/2/4 = OC/SCG/SCV."""
        word = (round(temp_c * 4) << 2) & 0xFFFF
        if fault:
            word |= 1
        body = bytes([word & 0xFF, word >> 8, 0xF0 | fault, 0x7F, 0xF0, 0xFF, 0xFF, 0xFF])
        pad = body + bytes([crc8_maxim(body)])
        t_milli = kernel_millidegrees(pad)  # the kernel reads the bits as a DS18B20
        self.set_text(device, render_w1_slave(pad, t_milli), f"{t_milli}\n")

    def set_text(self, device: str, w1_slave: str, temperature: str | None = None) -> None:
        """Exactly this text in ``w1_slave`` (and ``temperature``)."""
        d = self.master / device
        (d / "w1_slave").write_text(w1_slave)
        if temperature is not None:
            (d / "temperature").write_text(temperature)

    def remove(self, device: str) -> None:
        """The kernel drops the slave: directory and link go."""
        (self.devices_dir / device).unlink()
        keep = self.root / ".detached" / device
        keep.parent.mkdir(exist_ok=True)
        shutil.move(str(self.master / device), keep)
        self._stored[device] = keep
        self._update_slaves()

    def restore(self, device: str) -> None:
        """The slave answers a search again and comes back with its last contents."""
        keep = self._stored.pop(device)
        shutil.move(str(keep), self.master / device)
        (self.devices_dir / device).symlink_to(
            os.path.relpath(self.master / device, self.devices_dir)
        )
        self._update_slaves()
