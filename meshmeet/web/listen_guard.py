"""Accepting for the web listeners: caps and timeouts in front of asyncio's own transports.

``GuardedLoop`` is the gateway's asyncio loop; every server created on it (aiohttp's HTTP site
and the HTTPS site web/app/https.py adds to the same runner) accepts through a ``ListenerGuard``
(WebLimits) instead of asyncio's accept loop: at most ``max_connections`` per listener,
``max_per_address`` per source and ``max_silent_per_address`` that have sent nothing yet (the
rest are closed at accept, before any task is spent on them). A connection that has sent nothing
costs only its socket: no TLS state (asyncio allocates a 256 KiB read buffer for each TLS
connection when it wraps it) and no aiohttp handler; it is closed after ``idle_s``, or sooner when
the listener is full and a new one arrives. At most ``max_tls_handshakes`` TLS handshakes run at
once and at most ``tls_handshakes_per_s`` start per second (the others wait, still cheap and still
evictable), each ending after ``tls_handshake_s``. A TLS handshake is never aborted from outside:
on CPython 3.11 an aborted one keeps its SSLProtocol (and buffer) alive until its handshake timer
fires, so aborting would not free memory, only make room for more. After a burst of connections
the loop asks glibc to give freed memory back (``malloc_trim``): TLS connections fragment the
heap, and RSS would otherwise stay at its peak.

asyncio only. This module must never touch trio, aiohttp's routes or the node's state, and never
block the loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..wire.admission import ConnectionCounter, SourceRateLimiter, source_key

log = logging.getLogger(__name__)

ACCEPT_POLL_S = 5.0  # an accept loop looks whether its listener was closed (Server.close wakes it at once)
ACCEPT_RETRY_S = 0.1  # after EMFILE and the like
ACCEPT_BURST = 64  # connections accepted per wake-up before yielding to other tasks
LISTENER = "*"  # the rate-limiter key for a whole listener
TRIM_EVERY_S = 5.0
TRIM_AFTER_ACCEPTS = 100  # connections accepted since the last trim


@dataclass(frozen=True)
class WebLimits:
    """Caps and timeouts for every web listener (each listener counts on its own)."""

    max_connections: int = 128
    max_per_address: int = 32
    # connections from one source that have sent nothing yet: a browser opens up to 6 per host at once
    # and preconnects more (at 4, Chromium lost page files on /chair and the TV: connections reset)
    max_silent_per_address: int = 16
    idle_s: float = 30.0
    tls_handshake_s: float = 10.0
    max_tls_handshakes: int = 16  # per listener, at once; a LAN handshake takes milliseconds
    tls_handshakes_per_s: float = 10.0  # per listener; with tls_handshake_s bounds live TLS state
    tls_handshake_burst: int = 30


class ListenerGuard:
    """Accepts for one listening socket set: caps, the first-byte wait, then hands over to asyncio."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol_factory, ssl_context, limits: WebLimits) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._ssl = ssl_context
        self.limits = limits
        self.counter = ConnectionCounter(limits.max_connections, limits.max_per_address)
        # Not yet costly (sent nothing, or waiting for a TLS handshake slot): how to drop each one.
        self._waiting: OrderedDict[socket.socket, Callable[[], object]] = OrderedDict()
        self._live: dict[socket.socket, str] = {}  # handed over to asyncio, with their source
        self._handshake_slots = asyncio.Semaphore(limits.max_tls_handshakes)
        self._handshake_rate = SourceRateLimiter(limits.tls_handshakes_per_s, limits.tls_handshake_burst)
        self._sources: dict[socket.socket, str] = {}
        self._silent_by_source: dict[str, int] = {}
        self.evicted = 0
        self.accepted = 0
        self._tasks: set[asyncio.Task] = set()
        self._wakers: dict[int, asyncio.Event] = {}  # the server's socket's fd -> its accept loop's event

    def start(self, listening: Iterable, backlog: int) -> None:
        """Listen and accept on (duplicates of) the server's sockets until the server closes them."""
        for served in listening:
            own = socket.socket(served.family, served.type, served.proto, fileno=os.dup(served.fileno()))
            own.setblocking(False)
            own.listen(backlog)
            self._spawn(self._accept_loop(served, own))

    def _spawn(self, coro) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, served, listening: socket.socket) -> None:
        # Readiness, not loop.sock_accept: cancelling a pending sock_accept on a poll timeout could
        # race an arriving connection (asyncio logged InvalidStateError and that connection was
        # never served, ~1 in a few hundred under load). Waiting on an Event loses nothing when
        # cancelled; the accept itself is a plain non-blocking call.
        readable = asyncio.Event()
        served_fd = served.fileno()
        self._wakers[served_fd] = readable  # set by served_closed: no need to poll for the close
        self._loop.add_reader(listening.fileno(), readable.set)
        try:
            while served.fileno() != -1:  # the server's own socket: -1 once aiohttp stopped the site
                try:
                    await asyncio.wait_for(readable.wait(), ACCEPT_POLL_S)
                except asyncio.TimeoutError:
                    continue
                readable.clear()
                for _ in range(ACCEPT_BURST):
                    try:
                        conn, addr = listening.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        log.warning("web accept failed: %s", e)  # EMFILE and friends: wait a little
                        await asyncio.sleep(ACCEPT_RETRY_S)
                        break
                    conn.setblocking(False)
                    self.accepted += 1
                    self._admit(conn, source_key(str(addr[0])))
                else:
                    readable.set()  # more may be waiting: let other tasks run, then go on
        finally:
            self._wakers.pop(served_fd, None)
            self._loop.remove_reader(listening.fileno())
            listening.close()

    def served_closed(self, served_fd: int) -> None:
        """The server closed its socket `served_fd`: that accept loop stops now (its duplicate closes)."""
        waker = self._wakers.get(served_fd)
        if waker is not None:
            waker.set()

    def _admit(self, conn: socket.socket, source: str) -> None:
        if self._silent_by_source.get(source, 0) >= self.limits.max_silent_per_address:
            self.counter.refused += 1
            conn.close()  # refused before any task or timer is spent on it
            return
        self._sweep()
        if not self.counter.source_full(source) and not self.counter.can_open(source) and self._waiting:
            waiting, drop = self._waiting.popitem(last=False)  # the listener is full: the longest waiting goes
            drop()
            self._release(waiting)  # its slot is free now; its task closes the socket
            self.evicted += 1
        if not self.counter.open(source):
            conn.close()
            return
        self._sources[conn] = source
        self._silent_by_source[source] = self._silent_by_source.get(source, 0) + 1
        self._spawn(self._serve(conn, source))

    def _sweep(self) -> None:
        """Forget handed-over connections asyncio has closed (their socket's fd is then -1)."""
        for conn in [c for c in self._live if c.fileno() == -1]:
            self._release(conn)

    def _release(self, conn: socket.socket) -> None:
        self._live.pop(conn, None)
        source = self._sources.pop(conn, None)
        if source is not None:
            self.counter.close(source)

    async def _serve(self, conn: socket.socket, source: str) -> None:
        fd = conn.fileno()
        spoke: asyncio.Future[bool] = self._loop.create_future()
        self._waiting[conn] = lambda: spoke.done() or spoke.set_result(False)
        self._loop.add_reader(fd, lambda: spoke.done() or spoke.set_result(True))
        try:
            readable = await asyncio.wait_for(spoke, self.limits.idle_s)
        except asyncio.TimeoutError:
            readable = False
        finally:
            self._loop.remove_reader(fd)
            self._waiting.pop(conn, None)
            left = self._silent_by_source.pop(source) - 1
            if left:
                self._silent_by_source[source] = left
        if not readable:
            conn.close()
            self._release(conn)
            return
        self._live[conn] = source
        if self._ssl is None:
            await self._hand_over(conn, source)
            return
        self._waiting[conn] = asyncio.current_task().cancel  # type: ignore[union-attr]
        try:
            async with self._handshake_slots:
                while (wait_s := self._handshake_rate.wait_s(LISTENER, self._loop.time())) > 0:
                    await asyncio.sleep(wait_s)
                self._handshake_rate.allow(LISTENER, self._loop.time())
                self._waiting.pop(conn, None)
                await self._hand_over(conn, source)
        except asyncio.CancelledError:
            conn.close()  # dropped while waiting: no TLS state was made
            self._release(conn)
            raise
        finally:
            self._waiting.pop(conn, None)

    async def _hand_over(self, conn: socket.socket, source: str) -> None:
        """Give the socket to asyncio (TLS handshake first, if any); on failure close and forget it."""
        done = False
        try:
            if self._ssl is None:
                await self._loop.connect_accepted_socket(self._factory, conn)
            else:
                await self._loop.connect_accepted_socket(
                    self._factory, conn, ssl=self._ssl, ssl_handshake_timeout=self.limits.tls_handshake_s
                )
            done = True
        except (OSError, asyncio.TimeoutError, ConnectionError) as e:
            log.debug("web connection from %s dropped before it was served: %s", source, e)
            # CPython before gh-114074 (3.11.7 here): the failed handshake's traceback holds the
            # frame that raised it, which holds the exception and the SSLProtocol with its 256 KiB
            # buffer: a cycle only a full GC frees. Dropping the traceback lets refcounting free it.
            e.__traceback__ = None
        finally:
            if not done:
                conn.close()
                self._release(conn)


def _malloc_trim():
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class GuardedLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose servers accept through a ListenerGuard each."""

    def __init__(self, limits: WebLimits) -> None:
        super().__init__()
        self.limits = limits
        self.guards: list[ListenerGuard] = []
        self.trims = 0
        self._trimmer: asyncio.Task | None = None

    async def _trim_after_bursts(self) -> None:
        trim = _malloc_trim()
        if trim is None:
            return
        seen = 0
        while True:
            await asyncio.sleep(TRIM_EVERY_S)
            accepted = sum(g.accepted for g in self.guards)
            if accepted - seen >= TRIM_AFTER_ACCEPTS:
                seen = accepted
                trim(0)
                self.trims += 1

    def _stop_serving(self, sock) -> None:  # asyncio.Server.close() calls this for each of its sockets
        fd = sock.fileno()
        super()._stop_serving(sock)  # type: ignore[misc]
        for guard in self.guards:
            guard.served_closed(fd)

    async def create_server(  # type: ignore[override]
        self, protocol_factory, host=None, port=None, *, ssl=None, **kwargs
    ) -> asyncio.Server:
        """As asyncio's, but the returned server accepts through a ListenerGuard (it is not serving itself)."""
        kwargs["start_serving"] = False  # the guard accepts instead of asyncio's own accept loop
        kwargs.pop("ssl_handshake_timeout", None)
        server = await super().create_server(protocol_factory, host, port, ssl=ssl, **kwargs)
        guard = ListenerGuard(self, protocol_factory, ssl, self.limits)
        guard.start(server.sockets, kwargs.get("backlog", 100))
        self.guards.append(guard)
        if self._trimmer is None:
            self._trimmer = self.create_task(self._trim_after_bursts())
        return server
