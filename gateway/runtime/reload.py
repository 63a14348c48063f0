"""The daemon's outer loop: run a Gateway, stop it on SIGTERM, reload it on SIGHUP.

A reload validates the new file first. An invalid file is refused with every error in
the log and the running gateway is left alone. A valid one replaces the running gateway
the way a clean stop does: drivers close, the queue commits (MQTT messages not yet
committed are not acknowledged, so the broker redelivers them to the new gateway),
sinks drain, then the new gateway starts on the same journal.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from drivers.ports import close_parked_ports
from gateway.config import GatewayConfig, load_config
from gateway.core.errors import ConfigError
from gateway.runtime.daemon import Gateway
from gateway.runtime.sdnotify import SystemdNotifier

log = logging.getLogger(__name__)


async def run_with_reload(
    config: GatewayConfig,
    path: str | Path,
    stop: asyncio.Event,
    reload: asyncio.Event,
    notifier: SystemdNotifier | None = None,
) -> None:
    """Run until stop is set; each time reload is set, swap in the file's new config."""
    try:
        await _run(config, path, stop, reload, notifier or SystemdNotifier())
    finally:
        close_parked_ports()  # ports handed over to a gateway that never claimed them


async def _run(
    config: GatewayConfig,
    path: str | Path,
    stop: asyncio.Event,
    reload: asyncio.Event,
    notifier: SystemdNotifier,
) -> None:
    current = config
    while True:
        gateway_stop = asyncio.Event()
        gateway = Gateway(current, notifier=notifier)
        task = asyncio.create_task(gateway.run(gateway_stop), name="gateway")
        sweep = asyncio.create_task(_sweep_parked_ports(gateway), name="sweep-parked-ports")
        while True:
            stop_wait = asyncio.create_task(stop.wait())
            reload_wait = asyncio.create_task(reload.wait())
            done, pending = await asyncio.wait(
                {task, stop_wait, reload_wait}, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending - {task}:
                waiter.cancel()
            if task in done:
                sweep.cancel()
                task.result()  # a crash of the gateway propagates
                return
            if stop.is_set():
                sweep.cancel()
                gateway_stop.set()
                await task
                return
            reload.clear()
            try:
                new = await asyncio.to_thread(load_config, path)
            except ConfigError as exc:
                log.error("reload refused: %s; the running config stays", exc)
                for field, message in exc.problems:
                    log.error("reload refused: %s: %s", field, message)
                continue
            log.info("reload: config %s is valid, swapping it in", path)
            notifier.notify("RELOADING=1", "STATUS=reloading config")
            sweep.cancel()  # its ports are for the next gateway now
            gateway.hand_over_ports()
            gateway_stop.set()
            await task
            current = new
            break


async def _sweep_parked_ports(gateway: Gateway) -> None:
    """Once a (re)loaded gateway is up and its drivers claimed their ports, close the rest."""
    await gateway.ready.wait()
    await asyncio.sleep(SWEEP_AFTER_READY_S)
    close_parked_ports()


SWEEP_AFTER_READY_S = 2.0


def install_signal_handlers(stop: asyncio.Event, reload: asyncio.Event) -> None:
    """SIGTERM/SIGINT stop the daemon; SIGHUP reloads its config."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
