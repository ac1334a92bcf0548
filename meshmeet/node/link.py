"""One authenticated TCP link: its socket, its sans-IO connection, its writer and its reader.

`Link` queues messages for its one writer task (`guard_writer`: every write has a deadline, so a
peer that stops reading can never stall the reader's keepalive timer); `read_link` feeds the
socket's bytes and the connection's timers to the connection until the link closes, and tells the
manager (links.py) what happened through `LinkHooks`. This module must never parse handshake or
frame bytes itself (meshmeet.wire does), never dial or accept, and never touch another link.
"""

from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass, field
from typing import Callable

import trio

from ..wire import ConnectionClosed, HandshakeComplete, LinkConnection, MessageReceived, RttSample

log = logging.getLogger("meshmeet.node.links")

RECEIVE_BYTES = 65536
OUTGOING_QUEUE_MESSAGES = 1024
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux value
UNSENT_LOWAT_BYTES = 16384
CLOSE_GRACE_S = 1.0
WRITE_CHUNK_BYTES = UNSENT_LOWAT_BYTES  # each chunk must leave within the write deadline


@dataclass
class PeerRecord:
    """What this node knows about one neighbour, for dialing and for status."""

    node_id: str
    site: str = ""
    state: str = "down"  # up | connecting | down
    rtt_ms: float | None = None
    link: "Link | None" = None
    changed: trio.Event = field(default_factory=trio.Event)
    links_opened: int = 0
    last_error: str = ""

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class Link:
    """One authenticated TCP connection: a stream plus the sans-IO connection that speaks on it."""

    def __init__(self, stream: trio.abc.Stream, conn: LinkConnection, address: str, initiator_short_id: int) -> None:
        self.stream = stream
        self.conn = conn
        self.address = address
        self.initiator_short_id = initiator_short_id
        self.opened_at = trio.current_time()
        self._send_lock = trio.Lock()
        self.closed = False
        self.peer_node_id: str | None = None
        self.write_timeout_s = conn.dead_after_s
        self.failure = ""  # why the writer gave up, for status
        self._kicked = False
        # bytes: an application message; None: "the connection has bytes to send" (a kick);
        # _CloseRequest: close after everything queued before it (see close)
        self.outgoing_send, self.outgoing_receive = trio.open_memory_channel[bytes | None | _CloseRequest](
            OUTGOING_QUEUE_MESSAGES)
        self._writer_done = trio.Event()  # the writer sent the close frame, or stopped

    def kick(self) -> None:
        """Tell the writer the connection queued bytes (handshake, pong, ping); never waits.

        When the queue is full the writer is busy and sends them with its next message anyway."""
        if self._kicked or not self.conn.has_data_to_send():
            return
        try:
            self.outgoing_send.send_nowait(None)
            self._kicked = True
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def flush(self) -> None:
        """Send what the connection has queued; each chunk must leave within write_timeout_s.

        trio.TooSlowError when the peer has not taken a chunk in time (it stopped reading)."""
        data = self.conn.data_to_send()
        if not data:
            return
        async with self._send_lock:
            for start in range(0, len(data), WRITE_CHUNK_BYTES):
                with trio.fail_after(self.write_timeout_s):
                    await self.stream.send_all(data[start : start + WRITE_CHUNK_BYTES])

    async def flush_final(self) -> None:
        """Best effort, at most CLOSE_GRACE_S: send a close frame before the link is dropped."""
        with trio.move_on_after(CLOSE_GRACE_S):
            await self._send_pending_quietly()

    async def _send_pending_quietly(self) -> None:
        """Whatever the connection has to send, ignoring a socket that is already gone."""
        try:
            data = self.conn.data_to_send()
            if data:
                async with self._send_lock:
                    await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    def _queued_into_conn(self) -> None:
        while True:
            try:
                payload = self.outgoing_receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            if isinstance(payload, bytes) and not self.conn.send_message(payload, trio.current_time()):
                return

    async def send(self, payload: bytes) -> None:
        """Queue one message for the writer task (waits while the queue is full)."""
        if self.closed:
            raise trio.ClosedResourceError("link closed")
        await self.outgoing_send.send(payload)

    def send_nowait(self, payload: bytes) -> bool:
        """Queue one message without waiting; False when the queue is full or the link closed."""
        if self.closed:
            return False
        try:
            self.outgoing_send.send_nowait(payload)
            return True
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False

    async def write_loop(self) -> None:
        """Move queued messages through the connection to the socket: the link's only writer."""
        try:
            async for payload in self.outgoing_receive:
                if isinstance(payload, _CloseRequest):
                    self.conn.close(payload.reason, trio.current_time())
                    await self._send_pending_quietly()
                    return
                if payload is None:
                    self._kicked = False
                elif not self.conn.send_message(payload, trio.current_time()):
                    return
                await self.flush()
        finally:
            self._writer_done.set()

    async def close(self, reason: str) -> None:
        """Send what was queued, then a close frame, then drop the stream (at most CLOSE_GRACE_S).

        The close goes through the writer's queue: the writer may hold a message it took off the
        queue and has not handed to the connection yet (a revocation's entry, queued just before),
        and closing the connection under it dropped that message."""
        if self.closed:
            return
        self.closed = True
        with trio.move_on_after(CLOSE_GRACE_S) as scope:
            scope.shield = True
            try:
                self.outgoing_send.send_nowait(_CloseRequest(reason))
                await self._writer_done.wait()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # the queue is full or the writer is gone: close here, with what is queued first
            self._queued_into_conn()  # all three do nothing once the writer has closed it
            self.conn.close(reason, trio.current_time())
            await self._send_pending_quietly()
            await trio.aclose_forcefully(self.stream)


@dataclass(frozen=True)
class _CloseRequest:
    """In a link's queue: close the connection once everything before it is sent."""

    reason: str


@dataclass(frozen=True)
class LinkHooks:
    """What a link's reader tells its manager (links.py): the handshake is done, a message came,
    a stranger was refused, the link is down."""

    link_up: Callable[[Link, HandshakeComplete], PeerRecord | None]  # None: a duplicate, close it
    deliver: Callable[[str, bytes], None]
    refused: Callable[[], None]
    link_down: Callable[[str], None]


@dataclass
class _Reading:
    """One link's reader state: the peer's record once the handshake is done."""

    link: Link
    initiator: int | None
    established: Callable[[], None] | None
    hooks: LinkHooks
    record: PeerRecord | None = None
    came_up: str | None = None

    def current(self) -> bool:
        """Whether this link is (still) its peer's link."""
        return self.record is not None and self.record.link is self.link


# ----- the reader ------------------------------------------------------------------------------

async def run_link(
    stream: trio.SocketStream,
    conn: LinkConnection,
    address: str,
    first: bytes,
    initiator: int | None,
    established: Callable[[], None] | None,
    hooks: LinkHooks,
) -> str | None:
    """One link's whole life: its writer task and its reader; the peer's node id if it came up."""
    link = Link(stream, conn, address, initiator if initiator is not None else -1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(guard_writer, link)
        link.kick()  # msg1, when we dialed
        try:
            return await read_link(link, first, initiator, established, hooks)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.info("link %s: transport error: %s", address, e)
            return link.peer_node_id
        finally:
            nursery.cancel_scope.cancel()


async def read_link(
    link: Link, first: bytes, initiator: int | None, established: Callable[[], None] | None, hooks: "LinkHooks"
) -> str | None:
    """Feed the link's bytes and timers to its connection until it closes; the peer's node id
    if the link came up (or the peer was authenticated but already linked: a duplicate). It ends
    one of three ways: a close event from the connection (`_take_events`), the peer closing the
    socket, or a timer closing it (`_receive_or_tick`)."""
    reading = _Reading(link, initiator, established, hooks)
    try:
        pending: bytes | None = first
        while pending is not None:
            events = link.conn.receive_data(pending, trio.current_time()) if pending else []
            link.kick()
            if await _take_events(reading, events) or link.closed:
                break
            pending = await _receive_or_tick(reading)
        return reading.came_up
    finally:
        _link_gone(reading)

async def _take_events(reading: _Reading, events: list) -> bool:
    """Act on the connection's events; True when the link is finished (closed, or refused as a duplicate)."""
    link = reading.link
    for event in events:
        if isinstance(event, HandshakeComplete):
            if not _handshake_done(reading, event):
                return True
        elif isinstance(event, MessageReceived):
            if reading.current():
                reading.hooks.deliver(reading.record.node_id, event.payload)  # type: ignore[union-attr]
        elif isinstance(event, RttSample):
            if reading.current():
                reading.record.rtt_ms = event.rtt_s * 1000.0  # type: ignore[union-attr]
        elif isinstance(event, ConnectionClosed):
            record = reading.record
            if event.error:
                if record is None:
                    reading.hooks.refused()
                log.warning("link %s %s closed: %s", link.address, record.node_id if record else "(handshake)", event.reason)
            else:
                log.info("link %s closed: %s", link.address, event.reason)
            if record is not None:
                record.last_error = event.reason
            await link.flush_final()
            return True
    return False

def _handshake_done(reading: _Reading, event: HandshakeComplete) -> bool:
    """The peer is authenticated: the link becomes its link; False when it is a duplicate."""
    link = reading.link
    if reading.initiator is None:
        link.initiator_short_id = event.peer_short_id
    if reading.established is not None:
        reading.established()
    reading.record = reading.hooks.link_up(link, event)
    if reading.record is None:
        # the peer is authenticated and already linked the other way: the dialer learns who is
        # at this address and waits on that link instead of redialing it every few seconds (it
        # did: a full handshake every ~5 s on the weak link, forever)
        reading.came_up = event.peer_node_id
        return False
    reading.came_up = link.peer_node_id = reading.record.node_id
    return True

async def _receive_or_tick(reading: _Reading) -> bytes | None:
    """The next bytes from the socket (b"" when a timer fired and the link lives on); None when
    the peer closed the socket or a timer closed the link."""
    link = reading.link
    conn = link.conn
    deadline = conn.next_deadline()
    with trio.move_on_at(deadline if deadline is not None else float("inf")) as scope:
        data = await link.stream.receive_some(RECEIVE_BYTES)
        if not data:
            for event in conn.receive_data(b"", trio.current_time()):
                if isinstance(event, ConnectionClosed):
                    log.info("link %s: peer closed (%s)", link.address, event.reason)
            return None
        return data
    if scope.cancelled_caught:
        for event in conn.handle_timer(trio.current_time()):
            if isinstance(event, ConnectionClosed):
                log.warning("link %s: %s", link.address, event.reason)
                if reading.record is not None:
                    reading.record.last_error = event.reason
                await link.flush_final()
                return None
        link.kick()  # a keepalive ping, if one was due
    return b""

def _link_gone(reading: _Reading) -> None:
    """The link is over: close its queue and, if it was the peer's link, mark the peer down."""
    link, record = reading.link, reading.record
    link.closed = True
    link.outgoing_send.close()
    if record is not None and link.failure:
        record.last_error = link.failure
    if record is not None and record.link is link:
        record.link = None
        record.state = "down"
        record.notify()
        reading.hooks.link_down(record.node_id)


# ----- the writer and the socket ----------------------------------------------------------------

async def guard_writer(link: Link) -> None:
    """Run the writer; when a write fails or misses its deadline, drop the stream (the reader then ends)."""
    try:
        await link.write_loop()
    except trio.TooSlowError:
        link.failure = "peer not reading"
        log.warning("link %s: the peer took nothing for %.1f s, closing", link.address, link.write_timeout_s)
        await trio.aclose_forcefully(link.stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
        log.info("link %s: write failed: %s", link.address, e)
        await trio.aclose_forcefully(link.stream)


def keep_new(old: Link, new: Link) -> bool:
    """Both ends agree: keep the link dialed by the smaller short id; same dialer, keep the newer."""
    if old.initiator_short_id == new.initiator_short_id:
        return True
    return new.initiator_short_id < old.initiator_short_id


def limit_unsent(stream: trio.SocketStream) -> None:
    """Keep at most UNSENT_LOWAT_BYTES unsent in the kernel, so a slow link's backlog waits in our
    own queues, where media and sync can see it as queue delay and choose what to drop."""
    try:
        stream.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, UNSENT_LOWAT_BYTES)
    except OSError:  # not Linux, or an old kernel: only congestion visibility suffers
        pass


TCP_INFO_BYTES = 256  # more than struct tcp_info has on any kernel: the kernel returns what it has
TCP_INFO_MIN_RTT_OFFSET = 148  # struct tcp_info.tcpi_min_rtt (µs, Linux >= 4.10)
TCP_INFO_RTT_OFFSET = 68  # struct tcp_info.tcpi_rtt (smoothed, µs): older kernels


def kernel_min_rtt_s(stream: trio.SocketStream) -> float | None:
    """The lowest round trip the kernel's TCP measured on this link (tcpi_min_rtt): the path's own
    delay, untouched by how late either node's event loop reads (a loaded machine adds 100 ms to an
    application-level RTT on loopback). None where TCP_INFO is not available."""
    try:
        info = stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    except (OSError, AttributeError):
        return None
    offset = TCP_INFO_MIN_RTT_OFFSET if len(info) >= TCP_INFO_MIN_RTT_OFFSET + 4 else TCP_INFO_RTT_OFFSET
    if len(info) < offset + 4:
        return None
    us = struct.unpack_from("=I", info, offset)[0]
    return us / 1e6 if us else None


def peer_address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"
