"""Every aiomqtt / paho private attribute the gateway touches, in one place.

aiomqtt 2.5 has no manual-ack API and hands messages over one ``await`` at a time;
paho reads one packet per readable event and queues one packet per PUBACK. The MQTT
driver (``drivers/mqtt/driver.py``) and the planner's command channel
(``gateway/sinks/planner/feed.py``) work around that through the private attributes below.
Nothing else may reach into aiomqtt or paho internals: call the functions here.

``PRIVATE_ATTRIBUTES`` lists each attribute with what it must be; the test
``tests/drivers/mqtt/test_mqtt_client.py`` pins every one against the installed
aiomqtt and paho, so an upgrade that renames or retypes one fails there, by name,
instead of as a lost acknowledgement in production. Where a fallback exists (the
throughput tweaks, the batched PUBACK, the flush before DISCONNECT), the code looks the
attribute up with ``getattr`` and degrades to paho's public behaviour; the manual ack and
the queue access have no fallback (without them the broker would lose messages or the
driver would be an order of magnitude slower), so they fail loudly.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterable
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho

log = logging.getLogger(__name__)

# (owner, attribute, what it must be): the contract pinned by the test.
PRIVATE_ATTRIBUTES: Final[tuple[tuple[str, str, str], ...]] = (
    ("aiomqtt.Client", "_client", "the paho.mqtt.client.Client it wraps"),
    ("aiomqtt.Client", "_queue", "asyncio.Queue of aiomqtt.Message behind client.messages"),
    ("paho.Client", "_out_packet", "collections.deque of packets not yet written"),
    ("paho.Client", "_sock", "the socket, None when not connected"),
    ("paho.Client", "_on_message_filtered", "topic matcher with _root._children (dict)"),
    ("paho.Client", "_create_socket", "method () -> socket, called on connect"),
    ("paho.Client", "_packet_queue", "method (command, packet, mid, qos) queueing raw bytes"),
    ("paho.Client", "_manual_ack", "bool set by manual_ack_set()"),
)


def paho_client(client: aiomqtt.Client) -> paho.Client:
    """The paho client an aiomqtt client wraps (private ``_client``)."""
    inner: paho.Client = client._client
    return inner


def waiting_messages(client: aiomqtt.Client) -> asyncio.Queue[aiomqtt.Message]:
    """The queue behind ``client.messages`` (private ``_queue``), for batch draining.

    aiomqtt only offers one message per await (a task and an asyncio.wait each); at
    20k msg/s that costs more than the decoding, so the driver takes what is already
    waiting straight from the queue.
    """
    queue: asyncio.Queue[aiomqtt.Message] = client._queue
    return queue


def enable_manual_acks(client: aiomqtt.Client) -> None:
    """Switch on paho's manual acknowledgement; call before connecting.

    A persistent session's queued messages arrive right after CONNACK, and without the
    flag paho would PUBACK them on receipt, before the journal committed them.
    """
    paho_client(client).manual_ack_set(True)


def ack(client: aiomqtt.Client, mid: int, qos: int) -> None:
    """PUBACK one message of a manual-ack client."""
    paho_client(client).ack(mid, qos)


def disconnect(client: aiomqtt.Client) -> None:
    """Send DISCONNECT from outside the ``async with`` (the broker then drops the Will)."""
    paho_client(client).disconnect()


def tune_for_throughput(client: aiomqtt.Client) -> None:
    """Buffered socket reads and no per-message topic-filter walk (no-ops if absent)."""
    inner = paho_client(client)
    _buffer_reads(inner)
    _skip_topic_matcher(inner)


FLUSH_TIMEOUT_S: Final = 1.0


async def flush_output(client: paho.Client, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
    """Wait (bounded) until paho has written every queued packet, e.g. the last PUBACKs.

    Without it, PUBACKs queued just before a graceful DISCONNECT were measured to be lost
    now and then (the broker then redelivers those messages to the next session: duplicates
    in the journal, never loss). paho's out-queue is private; without it there is no wait.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while getattr(client, "_out_packet", None) and getattr(client, "_sock", None):
        if loop.time() >= deadline:
            log.debug("%d packets unsent at disconnect", len(client._out_packet))
            return
        await asyncio.sleep(0.002)


_PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1 PUBACK: type 0x40, remaining length 2, mid


def send_pubacks(client: paho.Client, mids: Iterable[int]) -> None:
    """PUBACK every message id, as one queued packet when paho allows it.

    paho's ack() queues one 4-byte packet per message, and each queued packet costs a
    wake-up write, a writer registration and a send() syscall. The PUBACKs of a delivery
    are queued as one packet instead (the same bytes, back to back: one send()).
    """
    mids = list(mids)
    queue = getattr(client, "_packet_queue", None)
    if len(mids) > 1 and queue is not None and getattr(client, "_manual_ack", False):
        pack = _PUBACK.pack
        queue(paho.PUBACK, b"".join([pack(paho.PUBACK, 2, mid) for mid in mids]), 0, 1)
    else:
        send = client.ack
        for mid in mids:
            send(mid, 1)


# Bytes asked of the kernel per recv(): a few hundred sensor messages.
READ_BUFFER_BYTES: Final = 64 * 1024


class BufferedSocket:
    """paho's socket with reads served from a buffer filled by large recv() calls.

    paho reads each packet with at least three recv() calls (command byte, length bytes,
    body) and aiomqtt runs one loop_read() per readable event, so a burst cost three
    syscalls and one event-loop turn per message. Reading 64 KB at a time and reporting
    the buffered bytes through ``pending()`` (which aiomqtt's read callback already polls
    for SSL sockets) lets one readable event decode every complete packet that arrived.
    Everything else (send, fileno, close, setblocking, TLS) goes to the real socket.
    """

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._sock.recv(max(bufsize, READ_BUFFER_BYTES))
            if len(buf) <= bufsize:
                self._buf, self._pos = b"", 0
                return bytes(buf)
            pos = 0
            self._buf = buf
        end = pos + bufsize
        self._pos = end
        return bytes(buf[pos:end])

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return max(0, len(self._buf) - self._pos) + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _NoFilteredCallbacks:
    """Stands in for paho's topic matcher of message_callback_add(), which we never use.

    paho walks that (empty) trie for every incoming message to look for per-topic
    callbacks; at 20k msg/s the walk costs a tenth of the event loop.
    """

    __slots__ = ()

    def iter_match(self, topic: str) -> tuple[()]:
        return ()


def _skip_topic_matcher(client: paho.Client) -> None:
    """Drop paho's per-message topic-filter walk (private paho API; no-op if absent)."""
    matcher = getattr(client, "_on_message_filtered", None)
    root = getattr(matcher, "_root", None)
    if root is not None and not getattr(root, "_children", True):
        client._on_message_filtered = _NoFilteredCallbacks()  # type: ignore[assignment]


def _buffer_reads(client: paho.Client) -> None:
    """Make paho create buffered sockets (see BufferedSocket); private paho API."""
    create = getattr(client, "_create_socket", None)
    if create is None:  # a paho without the hook: keep its unbuffered reads
        return

    def create_buffered() -> Any:
        return BufferedSocket(create())

    client._create_socket = create_buffered  # type: ignore[method-assign]
