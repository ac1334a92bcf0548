"""Opening and closing the web gateway from trio, and the handle the node keeps while it runs.

``open_web_gateway`` starts the gateway's asyncio thread (web/serving.py), serves the gateway app
there, wires it to the node with the bridge's three crossings (web/bridge.py: ``TrioCalls`` for
``api(name, args)``, ``Outbound`` and ``Inbound``) and yields a ``WebGateway``: ``publish`` and
``try_publish`` to browsers, ``run_in_loop`` for setup and inspection. On exit it shuts down in a
fixed order: pipes and calls closed, aiohttp cleaned up under a shielded deadline, loop stopped,
thread joined.

This module is trio's side only: it must never import asyncio or touch the loop except through
the bridge, and never hold node state (the node hands it ``api`` and reads ``inbound``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ..api.contract import ApiCall
from .bridge import INBOUND_CAPACITY, OUTBOUND_CAPACITY, Inbound, Outbound, PipeStats, TrioCalls, run_in_loop, stop_loop
from .gateway import AppSetup, RoutesFactory
from .hub import Hub, SlowClientPolicy, encode_payload
from .listen_guard import WebLimits
from .serving import Served, serve_app, start_loop_thread

if TYPE_CHECKING:
    import asyncio

__all__ = ["SHUTDOWN_S", "THREAD_JOIN_S", "WebGateway", "WebLimits", "open_web_gateway"]

log = logging.getLogger(__name__)

T = TypeVar("T")

SHUTDOWN_S = 5.0
THREAD_JOIN_S = 3.0


class WebGateway:
    """A running gateway, as seen from trio."""

    def __init__(self, url: str, host: str, port: int, outbound: Outbound, inbound: Inbound,
                 loop: "asyncio.AbstractEventLoop", hub: Hub) -> None:
        self.url = url
        self.host = host
        self.port = port
        self.inbound = inbound
        self._outbound = outbound
        self._loop = loop
        self._hub = hub

    async def publish(self, topic: str, payload: bytes | str | dict) -> None:
        """Send one message to every browser on ``topic``; waits while the pipe is full."""
        await self._outbound.send(topic, encode_payload(payload))

    def try_publish(self, topic: str, payload: bytes | str | dict) -> bool:
        """Like ``publish`` but never waits: False means the message was dropped (pipe full)."""
        return self._outbound.try_send(topic, encode_payload(payload))

    @property
    def outbound_stats(self) -> PipeStats:
        return self._outbound.stats

    async def run_in_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the gateway's asyncio loop (for setup/inspection) and return its result."""
        return await run_in_loop(self._loop, coro)

    async def subscriber_count(self, topic: str | None = None) -> int:
        """How many browsers are subscribed (to ``topic``, or in total)."""

        async def count() -> int:
            return self._hub.subscriber_count(topic)

        return await self.run_in_loop(count())


@asynccontextmanager
async def open_web_gateway(
    nursery: trio.Nursery | None,
    *,
    host: str,
    port: int,
    api: ApiCall,
    routes_factory: RoutesFactory | None = None,
    static_dirs: Mapping[str, Path] | None = None,
    app_setup: AppSetup | Iterable[AppSetup] | None = None,
    outbound_capacity: int = OUTBOUND_CAPACITY,
    inbound_capacity: int = INBOUND_CAPACITY,
    client_queue_messages: int | None = None,
    slow_client_policy: SlowClientPolicy = SlowClientPolicy.DROP_OLDEST,
    limits: WebLimits | None = None,
) -> AsyncIterator[WebGateway]:
    """Serve the web gateway on ``host:port`` (0 picks a free port) for the block's duration.

    ``routes_factory``, ``static_dirs`` and ``app_setup`` extend the app (see ``build_app``);
    they run on the gateway thread. ``gw.publish(topic, ...)`` reaches the browsers on
    ``/ws/{topic}`` and any hub sink an ``app_setup`` added for that topic.

    API calls run as tasks in ``nursery`` (or as trio system tasks when None); either way the
    gateway cancels the ones still running when it closes. On exit every
    WebSocket is closed with 1001, aiohttp is cleaned up under a shielded deadline of
    ``SHUTDOWN_S`` and the gateway thread is joined. Raises MeshmeetError if the port is busy.
    """
    token = trio.lowlevel.current_trio_token()
    limits = limits or WebLimits()
    loop, thread = start_loop_thread(f"meshmeet-web-{port}", limits)
    spawn = nursery.start_soon if nursery is not None else trio.lowlevel.spawn_system_task
    calls = TrioCalls(token, loop, spawn, api)
    inbound = Inbound(token, loop, inbound_capacity)
    served: Served | None = None
    outbound: Outbound | None = None
    try:
        serving = serve_app(
            host, port, api_call=calls.call, inbound=inbound.send, routes_factory=routes_factory,
            static_dirs=static_dirs, app_setup=app_setup, slow_client_policy=slow_client_policy,
            client_queue_messages=client_queue_messages, idle_s=limits.idle_s,
        )
        served = await run_in_loop(loop, serving)
        outbound = Outbound(token, loop, served.hub.publish, outbound_capacity)
        log.info("web gateway listening on %s", served.url)
        yield WebGateway(served.url, host, served.port, outbound, inbound, loop, served.hub)
    finally:
        with trio.CancelScope(shield=True):
            if outbound is not None:
                outbound.close()
            inbound.close()
            calls.close()
            with trio.move_on_after(SHUTDOWN_S) as cleanup_scope:
                if served is not None:
                    try:
                        await run_in_loop(loop, served.runner.cleanup())
                    except Exception:  # noqa: BLE001 - keep shutting down
                        log.exception("web gateway cleanup failed")
            if cleanup_scope.cancelled_caught:
                log.warning("web gateway cleanup took longer than %s s; stopping its loop anyway", SHUTDOWN_S)
            stop_loop(loop)
            await trio.to_thread.run_sync(thread.join, THREAD_JOIN_S, abandon_on_cancel=True)
            if thread.is_alive():
                log.warning("web gateway thread did not stop within %s s; leaving it (daemon)", THREAD_JOIN_S)
