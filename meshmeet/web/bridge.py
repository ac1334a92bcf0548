"""The seam between the trio node and the aiohttp gateway's asyncio thread: every crossing.

trio owns the main thread, the signals and the shutdown order; the gateway runs a stock asyncio
loop in its own thread (web/gateway_lifecycle.py opens and closes it). The two worlds meet here
and only here, through exactly three things:

* calls: trio awaits a coroutine on the loop (``run_in_loop``: setup, cleanup), and an HTTP
  handler awaits ``TrioCalls.call(name, args)``, which runs ``api(name, args)`` as a task in the
  trio nursery and returns its dict or raises ``ApiError`` (anything else becomes a logged 500);
* ``Outbound``: a bounded one-way pipe trio -> asyncio (events and media chunks, fanned out to
  browsers by the hub on the asyncio side: one crossing per message, never per browser);
* ``Inbound``: a bounded one-way pipe asyncio -> trio (what browsers send).

Pipes use credits: the sender holds ``capacity`` credits, spends one per message, and the
receiving side hands them back (in batches) once it has taken the messages. Messages cross in
batches, one wake-up each: trio -> asyncio keeps at most one batch in flight and gathers what is
published meanwhile into the next (the batch grows exactly when the other side is busy);
asyncio -> trio gathers what the browsers sent during one asyncio tick. Each side's state is touched
only by its own thread; the only traffic between threads is ``TrioToken.run_sync_soon`` and
``loop.call_soon_threadsafe`` with callbacks that never raise.

This is the only module that imports both trio and asyncio. It must never share mutable state
between the threads other than through those two calls, never block either loop, and hold nothing
but the crossings (what the gateway serves and how it starts and stops live elsewhere).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from ..api.contract import ApiCall, ApiError, internal_error, node_stopping
from .hub import Payload

log = logging.getLogger(__name__)

T = TypeVar("T")

OUTBOUND_CAPACITY = 1024
INBOUND_CAPACITY = 256


# ---------------------------------------------------------------- thread-crossing primitives


def _post_to_trio(token: trio.lowlevel.TrioToken, fn: Callable[..., None], *args: Any) -> bool:
    """Run ``fn(*args)`` soon on the trio thread; False if trio has finished."""
    try:
        token.run_sync_soon(_guarded, fn, *args)
        return True
    except trio.RunFinishedError:
        return False


def _post_to_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> bool:
    """Run ``fn(*args)`` soon on the asyncio thread; False if the loop is closed."""
    try:
        loop.call_soon_threadsafe(_guarded, fn, *args)
        return True
    except RuntimeError:
        return False


def _guarded(fn: Callable[..., None], *args: Any) -> None:
    """Callbacks crossing the seam must never raise into the other loop's machinery."""
    try:
        fn(*args)
    except BaseException:  # noqa: BLE001 - the other loop cannot handle it; log and carry on
        log.exception("bridge callback %r failed", fn)


async def run_in_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """From trio: run ``coro`` on the gateway's asyncio loop and return its result.

    Cancelling the trio caller cancels the asyncio task.
    """
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)

    def wake(_f: concurrent.futures.Future[T]) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass

    future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        future.cancel()
        raise
    return future.result()


def stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    """From trio: ask the gateway's loop to stop (its thread then closes it); no-op once closed."""
    _post_to_loop(loop, loop.stop)


# ---------------------------------------------------------------- trio -> asyncio pipe


@dataclass(frozen=True)
class PipeStats:
    """Counters of one pipe, read on the sending side."""

    sent: int
    dropped: int
    credits: int


class Outbound:
    """trio -> asyncio pipe; the trio half. Its asyncio half hands each message to ``deliver``."""

    def __init__(
        self,
        token: trio.lowlevel.TrioToken,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[str, Payload], None],
        capacity: int = OUTBOUND_CAPACITY,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._token = token
        self._loop = loop
        self._deliver = deliver
        self._credits = capacity
        self._lot = trio.lowlevel.ParkingLot()
        self._batch: list[tuple[str, Payload]] = []
        self._in_flight = False
        self._closed = False
        self._sent = 0
        self._dropped = 0

    @property
    def stats(self) -> PipeStats:
        return PipeStats(sent=self._sent, dropped=self._dropped, credits=self._credits)

    async def send(self, topic: str, payload: Payload) -> None:
        """Queue one message, waiting while the asyncio side holds every credit."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._credits == 0 and not self._closed:
            await self._lot.park()
        self._check_open()
        self._push(topic, payload)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def try_send(self, topic: str, payload: Payload) -> bool:
        """Queue one message if a credit is free; otherwise count a drop and return False."""
        self._check_open()
        if self._credits == 0:
            self._dropped += 1
            return False
        self._push(topic, payload)
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the web gateway is closed")

    def _push(self, topic: str, payload: Payload) -> None:
        self._credits -= 1
        self._sent += 1
        self._batch.append((topic, payload))
        if not self._in_flight:
            self._flush()

    def _flush(self) -> None:
        """Send the pending batch; at most one batch is in flight, the rest waits for its ack."""
        batch, self._batch = self._batch, []
        self._in_flight = True
        if not _post_to_loop(self._loop, self._on_loop, batch):
            self.close()

    def _on_loop(self, batch: list[tuple[str, Payload]]) -> None:  # asyncio thread
        deliver = self._deliver
        for topic, payload in batch:
            try:
                deliver(topic, payload)
            except Exception:  # noqa: BLE001 - one bad message must not stall the pipe
                log.exception("delivering a message on topic %s failed", topic)
        _post_to_trio(self._token, self._ack, len(batch))

    def _ack(self, n: int) -> None:
        """The asyncio side took a batch of ``n``: credits come back, the next batch may go."""
        self._credits += n
        self._in_flight = False
        if self._batch and not self._closed:
            self._flush()
        self._lot.unpark_all()

    def close(self) -> None:
        """trio thread: refuse further sends and wake every waiting sender."""
        self._closed = True
        self._lot.unpark_all()


# ---------------------------------------------------------------- asyncio -> trio pipe


class Inbound:
    """asyncio -> trio pipe. ``send`` runs on the asyncio thread; ``receive`` on the trio thread.

    Browser messages arrive as ``(topic, payload)``; async-iterate it on the trio side.
    Credits go back in batches of ``capacity // 4`` taken messages (one wake-up per batch). That
    cannot deadlock: a sender without credit means at least ``capacity - batch + 1`` messages
    are buffered or on their way to trio, and taking them completes a batch.
    """

    def __init__(self, token: trio.lowlevel.TrioToken, loop: asyncio.AbstractEventLoop, capacity: int = INBOUND_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._token = token
        self._loop = loop
        self._capacity = capacity
        # asyncio-side state
        self._credits = capacity
        self._credit_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._batch: list[tuple[str, Payload]] = []
        self._flush_posted = False
        self._send_closed = False
        # trio-side state
        self._buffer: collections.deque[tuple[str, Payload]] = collections.deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._taken = 0
        self._recv_closed = False

    # asyncio side -------------------------------------------------------
    async def send(self, topic: str, payload: Payload) -> None:
        """asyncio thread: queue one browser message, waiting for credit. ConnectionResetError once closed."""
        while self._credits == 0 and not self._send_closed:
            waiter = self._loop.create_future()
            self._credit_waiters.append(waiter)
            await waiter
        if self._send_closed:
            raise ConnectionResetError("the node side of the gateway is closed")
        self._credits -= 1
        self._batch.append((topic, payload))
        if not self._flush_posted:
            self._flush_posted = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._flush_posted = False
        if batch and not _post_to_trio(self._token, self._on_trio, batch):
            self._close_send()

    def _add_credits(self, n: int) -> None:
        self._credits += n
        self._wake_senders()

    def _close_send(self) -> None:
        self._send_closed = True
        self._wake_senders()

    def _wake_senders(self) -> None:
        while self._credit_waiters and (self._credits > 0 or self._send_closed):
            waiter = self._credit_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # trio side -----------------------------------------------------------
    def _on_trio(self, batch: list[tuple[str, Payload]]) -> None:
        self._buffer.extend(batch)
        self._lot.unpark_all()

    async def receive(self) -> tuple[str, Payload]:
        """trio thread: the next browser message; trio.EndOfChannel once closed and drained."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._buffer:
            if self._recv_closed:
                raise trio.EndOfChannel
            await self._lot.park()
        item = self._buffer.popleft()
        self._taken += 1
        if self._taken >= max(1, self._capacity // 4):  # batched; cannot deadlock (class docstring)
            taken, self._taken = self._taken, 0
            _post_to_loop(self._loop, self._add_credits, taken)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item

    def receive_nowait(self) -> tuple[str, Payload] | None:
        """trio thread: a buffered message or None."""
        if not self._buffer:
            return None
        item = self._buffer.popleft()
        _post_to_loop(self._loop, self._add_credits, 1)
        return item

    def __aiter__(self) -> Inbound:
        return self

    async def __anext__(self) -> tuple[str, Payload]:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """trio thread: end the stream (receivers drain, then EndOfChannel); stop the senders."""
        self._recv_closed = True
        self._lot.unpark_all()
        _post_to_loop(self._loop, self._close_send)


# ---------------------------------------------------------------- asyncio -> trio calls


class TrioCalls:
    """Runs ``api(name, args)`` in the trio nursery on behalf of asyncio HTTP handlers."""

    def __init__(
        self,
        token: trio.lowlevel.TrioToken,
        loop: asyncio.AbstractEventLoop,
        spawn: Callable[..., object],
        api: ApiCall,
    ) -> None:
        self._token = token
        self._loop = loop
        self._spawn = spawn
        self._api = api
        self._scopes: set[trio.CancelScope] = set()  # trio thread only
        self._closed = False  # trio thread only

    async def call(self, name: str, args: dict) -> dict:
        """asyncio thread: await the node's answer."""
        future: asyncio.Future[dict] = self._loop.create_future()
        scope_box: list[trio.CancelScope] = []  # filled and read on the trio thread only
        if not _post_to_trio(self._token, self._start, name, args, future, scope_box):
            raise node_stopping()
        try:
            return await future
        except asyncio.CancelledError:
            _post_to_trio(self._token, self._cancel, scope_box)
            raise

    def _start(self, name: str, args: dict, future: asyncio.Future[dict], scope_box: list[trio.CancelScope]) -> None:
        if self._closed:
            self._answer(future, None, node_stopping())
            return
        scope = trio.CancelScope()
        scope_box.append(scope)
        try:
            self._spawn(self._run, name, args, future, scope)
        except RuntimeError:  # nursery closed
            self._answer(future, None, node_stopping())

    def _cancel(self, scope_box: list[trio.CancelScope]) -> None:
        for scope in scope_box:
            scope.cancel()

    async def _run(self, name: str, args: dict, future: asyncio.Future[dict], scope: trio.CancelScope) -> None:
        result: Any = None
        error: BaseException | None = node_stopping()  # unless the handler finishes
        self._scopes.add(scope)
        try:
            with scope:
                result = await self._api(name, args)
                error = None
        except ApiError as e:
            error = e
        except Exception:  # noqa: BLE001 - report as 500, keep serving
            log.exception("API handler %r failed", name)
            error = internal_error()
        finally:
            self._scopes.discard(scope)
            self._answer(future, result, error)

    def _answer(self, future: asyncio.Future[dict], result: Any, error: BaseException | None) -> None:
        _post_to_loop(self._loop, _settle, future, result, error)

    def close(self) -> None:
        """trio thread: refuse new calls and cancel running ones."""
        self._closed = True
        for scope in list(self._scopes):
            scope.cancel()


def _settle(future: asyncio.Future[dict], result: Any, error: BaseException | None) -> None:
    if future.done():  # the HTTP handler gave up
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # the gateway checks that it is a dict
