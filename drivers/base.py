"""The driver contract: what every input driver is and offers.

A driver is a folder ``drivers/<name>/`` (name = folder = config table ``[[drivers.<name>]]``)
with a config model deriving from :class:`DriverConfig`, an implementation satisfying
:class:`Driver`, and a ``SPEC`` in its ``__init__.py`` that :mod:`drivers.registry` lists.
See drivers/README.md ("writing a driver").

Importing this module (or a driver's config) never loads a driver implementation or a
network library: ``coldchain check-config`` needs only the config models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gateway.core.clock import Clock
from gateway.core.model import Delivery

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


class DriverConfig(BaseModel):
    """Fields and cross-checks every driver block has (Telegraf's ``models.InputConfig``).

    The gateway's config checks every block generically through these methods: names are
    unique across all drivers, every sensor a block refers to exists, and no exclusive
    resource (a tty, an MQTT client id on one broker) is claimed by two blocks.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="instance name, unique across drivers")

    def sensor_refs(self) -> Iterator[tuple[str, str]]:
        """(field path inside this block, sensor id) for every sensor the block names."""
        yield from ()

    def resources(self) -> Iterator[str]:
        """Exclusive resources this block holds, e.g. ``tty:/dev/ttyUSB0``."""
        yield from ()

    def warnings(self) -> Iterator[tuple[str, str]]:
        """(field path, message) for what is valid but probably wrong (check-config prints)."""
        yield from ()

    def feeds_unnamed_sensors(self) -> bool:
        """True when the block can feed sensors it does not name.

        None of the shipped drivers can: the normaliser refuses a sensor its block does not
        name (``identity_mismatch``, docs/security.md), so a block lists every sensor.
        """
        return False


class Driver(Protocol):
    """What every input driver offers; the runtime's reconnect loop drives it.

    ``deliveries()`` connects, yields one empty :class:`Delivery` to say "connected",
    then ``Delivery(samples, rejects, ack)`` batches until the device or broker goes
    away, when it raises ``DriverDisconnected``. Drivers never retry on their own.
    """

    name: str

    def deliveries(self) -> AsyncIterator[Delivery]:
        """Connect, yield an empty delivery once connected, then data until it goes away."""
        ...

    async def close(self) -> None:
        """Release the port or connection; safe to call twice."""
        ...

    def stats(self) -> Mapping[str, int]:
        """Counters kept across reconnects (reported in ``gateway_health`` per driver)."""
        ...

    def keep_open_for_reload(self) -> None:
        """Before a SIGHUP reload: keep the port open for the next gateway if it can.

        A driver with nothing worth keeping (an MQTT session is redelivered by the
        broker) does nothing.
        """
        ...


C = TypeVar("C", bound=DriverConfig)


@dataclass(frozen=True, slots=True)
class DriverSpec(Generic[C]):
    """One registry entry: the config model and how to build a driver from a block.

    ``create`` imports the implementation lazily, so a config can be loaded (and
    checked) without the driver's libraries.
    """

    config: type[C]
    create: Callable[[C, Clock], Driver]
    summary: str

    def build(self, block: Any, clock: Clock) -> Driver:
        """A driver for one config block of this spec's table."""
        if not isinstance(block, self.config):
            msg = f"expected {self.config.__name__}, got {type(block).__name__}"
            raise TypeError(msg)
        return self.create(block, clock)
