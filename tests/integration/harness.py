"""Helpers for end-to-end tests: a gateway running in-process, waiting on conditions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig, parse_config
from gateway.runtime.daemon import Gateway


@contextlib.asynccontextmanager
async def running_gateway(config: GatewayConfig) -> AsyncIterator[Gateway]:
    """Run a Gateway until the block ends, then stop it the way SIGTERM does."""
    gateway = Gateway(config)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        async with asyncio.timeout(10):
            await gateway.ready.wait()
        yield gateway
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


async def wait_for(
    condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll a condition (sync or returning an awaitable) until it is truthy."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = condition()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


def hub_config(tmp_path: Path, **sections: Any) -> GatewayConfig:
    """A config for tests: hub, journal in tmp_path, plus the given sections."""
    doc: dict[str, Any] = {
        "hub": {"id": "hub-test"},
        "journal": {"path": str(tmp_path / "journal.db"), "commit_interval_ms": 20},
        "status_interval_s": 0.5,
    }
    doc.update(sections)
    return parse_config(doc)
