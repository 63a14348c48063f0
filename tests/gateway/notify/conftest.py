"""Fixtures of the notification tests: a ManualClock and the two real receivers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.core.clock import ManualClock
from tests.gateway.notify.receivers import HttpReceiver, SmtpReceiver


@pytest.fixture
def clock() -> ManualClock:
    """The test's clock (2026-01-01T00:00Z at the start)."""
    return ManualClock()


@pytest.fixture
def smtp(clock: ManualClock) -> Iterator[SmtpReceiver]:
    """aiosmtpd on a loopback port, stamping messages with the test clock."""
    receiver = SmtpReceiver(clock.now_ns)
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def http_receiver(clock: ManualClock) -> Iterator[HttpReceiver]:
    """A real HTTP server taking the JSON webhook."""
    receiver = HttpReceiver(clock.now_ns)
    yield receiver
    receiver.close()
