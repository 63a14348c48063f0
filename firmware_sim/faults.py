"""Seeded fault injection for simulated sensor output.

Faults and what the gateway should make of them:

=========  ======================================================  ==================
fault      what the simulator does                                  gateway sees
=========  ======================================================  ==================
checksum   sends the line with a wrong CRC                          reject "checksum"
garbage    sends an extra line of random bytes (non-UTF-8, NUL)     reject "garbage"
sentinel   sends a valid line with 85.0 or -127.0 (DS18B20)         SENTINEL reading
frozen     the probe repeats its last value for ``frozen_lines``    FROZEN readings
drop       the line is never sent (its seq is used up: a gap)       seq gap
=========  ======================================================  ==================
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, fields

DS18B20_POWER_ON_C = 85.0
DS18B20_DISCONNECTED_C = -127.0


class Fault(enum.Enum):
    """What happens to one reading line."""

    NONE = "none"
    DROP = "drop"
    CHECKSUM = "checksum"
    SENTINEL = "sentinel"
    FROZEN = "frozen"


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Per-line probabilities of each fault (0 disables it)."""

    checksum: float = 0.0
    garbage: float = 0.0
    sentinel: float = 0.0
    frozen: float = 0.0
    drop: float = 0.0
    frozen_lines: int = 20

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "frozen_lines" and not 0.0 <= value <= 1.0:
                msg = f"fault rate {f.name}={value} is not within 0..1"
                raise ValueError(msg)

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """Parse ``"checksum=0.05,garbage=0.02"`` (empty string: no faults)."""
        known = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, raw = item.partition("=")
            name = name.strip()
            if not sep or name not in known:
                msg = f"bad fault {item!r}: use name=rate with name in {sorted(known)}"
                raise ValueError(msg)
            values[name] = float(raw)
        frozen_lines = int(values.pop("frozen_lines", 20))
        return cls(frozen_lines=frozen_lines, **values)


class FaultInjector:
    """Draws faults for reading lines from seeded rates and remembers frozen probes."""

    def __init__(self, rates: FaultRates | None = None, seed: int = 0) -> None:
        self.rates = rates or FaultRates()
        self._rng = random.Random(seed)
        self._frozen_left: dict[str, int] = {}

    def decide(self, probe: str) -> Fault:
        """The fault for the next line of ``probe`` (drop > checksum > sentinel > frozen)."""
        r = self.rates
        rng = self._rng
        if self._frozen_left.get(probe, 0) > 0:
            self._frozen_left[probe] -= 1
            return Fault.FROZEN
        if r.drop and rng.random() < r.drop:
            return Fault.DROP
        if r.checksum and rng.random() < r.checksum:
            return Fault.CHECKSUM
        if r.sentinel and rng.random() < r.sentinel:
            return Fault.SENTINEL
        if r.frozen and rng.random() < r.frozen:
            self._frozen_left[probe] = max(0, r.frozen_lines - 1)
            return Fault.FROZEN
        return Fault.NONE

    def wants_garbage(self) -> bool:
        """True when a garbage line should be sent before the next reading."""
        return bool(self.rates.garbage) and self._rng.random() < self.rates.garbage

    def sentinel_c(self) -> float:
        """One of the DS18B20 sentinels, 85.0 (power-on) or -127.0 (disconnected)."""
        return self._rng.choice((DS18B20_POWER_ON_C, DS18B20_DISCONNECTED_C))

    def garbage_line(self, max_len: int = 48) -> bytes:
        """Random bytes (incl. NUL and non-UTF-8) ending ``\\r\\n``: exactly one garbage line.

        The bytes contain no ``\\n`` (so the line stays one line) and no ``$`` (so it can
        never be taken for a sentence start).
        """
        n = self._rng.randint(1, max_len)
        alphabet = bytes(b for b in range(256) if b not in b"\n$")
        body = bytes(self._rng.choice(alphabet) for _ in range(n))
        return body + b"\r\n"

    def corrupt_checksum(self, line: bytes) -> bytes:
        """The same line with its CRC changed to a different valid-looking value."""
        star = line.rindex(b"*")
        crc = int(line[star + 1 : star + 5], 16)
        bad = crc ^ self._rng.randint(1, 0xFFFF)
        return line[: star + 1] + f"{bad:04X}".encode("ascii") + line[star + 5 :]
