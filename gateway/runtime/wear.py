"""Disk wear: what the gateway writes to its storage, per reading and per day.

An SD card wears out by the bytes written to it, and a worn card is a dead hub that
nobody notices until a claim needs its data. The kernel counts the bytes each process
sends to the block layer (``write_bytes`` in ``/proc/self/io``: journal, WAL, checkpoints,
status file, logs written to files); this module samples it with the committed-readings
counter, so ``coldchain status`` can show the rate and what it means for a card of a
given endurance (``journal.card_endurance_tb``, terabytes written).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

WINDOW_S = 3600.0  # the rate is measured over the last hour (checkpoints come in bursts)
PROC_IO = Path("/proc/self/io")


def written_bytes(proc_io: Path = PROC_IO) -> int | None:
    """Bytes this process caused to be written to storage so far (None: not Linux)."""
    try:
        for row in proc_io.read_text().splitlines():
            if row.startswith("write_bytes:"):
                return int(row.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass(frozen=True, slots=True)
class WearRate:
    """Write rate over the sampled window and the card lifetime it implies."""

    bytes_per_s: float
    bytes_per_reading: float | None  # None while no reading was committed in the window
    bytes_per_day: float
    card_endurance_tb: float
    card_years: float  # years until the card's rated endurance is written at this rate

    def as_json(self) -> dict[str, float | None]:
        """The status.json form."""
        return {
            "bytes_per_s": round(self.bytes_per_s, 1),
            "bytes_per_reading": (
                None if self.bytes_per_reading is None else round(self.bytes_per_reading, 1)
            ),
            "gb_per_day": round(self.bytes_per_day / 1e9, 3),
            "card_endurance_tb": self.card_endurance_tb,
            # None: nothing written in the window, the card outlives any projection
            "card_years": round(self.card_years, 1) if self.card_years != float("inf") else None,
        }


class WearMeter:
    """Samples (time, bytes written, readings committed) and reports the recent rate."""

    def __init__(self, card_endurance_tb: float, window_s: float = WINDOW_S) -> None:
        self._endurance = card_endurance_tb
        self._window = window_s
        self._samples: deque[tuple[float, int, int]] = deque()

    def sample(self, mono_s: float, written: int, committed: int) -> WearRate | None:
        """Add a sample; the rate since the oldest one in the window (None: too early)."""
        self._samples.append((mono_s, written, committed))
        while len(self._samples) > 2 and mono_s - self._samples[1][0] >= self._window:
            self._samples.popleft()
        t0, w0, c0 = self._samples[0]
        if mono_s <= t0:
            return None
        per_s = (written - w0) / (mono_s - t0)
        readings = committed - c0
        per_day = per_s * 86_400
        years = self._endurance * 1e12 / (per_day * 365) if per_day > 0 else float("inf")
        return WearRate(
            bytes_per_s=per_s,
            bytes_per_reading=(written - w0) / readings if readings > 0 else None,
            bytes_per_day=per_day,
            card_endurance_tb=self._endurance,
            card_years=years,
        )
