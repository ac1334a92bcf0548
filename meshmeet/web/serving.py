"""The gateway's own asyncio thread: run a loop there and serve the gateway app on it.

``start_loop_thread`` starts a ``GuardedLoop`` (web/listen_guard.py: every server on it accepts
through caps and timeouts) in a daemon thread that, once the loop is stopped, cancels what is
left on it and closes it. ``serve_app`` (run on that loop) builds the hub and the app, listens on
``host:port`` (0 picks a free port), runs the app's ``on_serving`` hooks (e.g. the HTTPS site,
guarded alike since it is created on the same loop) and says where it listens;
``Served.runner.cleanup()`` undoes it. aiohttp closes a connection idle for ``idle_s`` between
requests.

Everything here is asyncio and aiohttp only; the bridge drives it from the node's side. This
module must never touch trio or the node's state, and never block the loop.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import MeshmeetError
from ..api.contract import ApiCall
from .gateway import CONTEXT_KEY, AppSetup, InboundSend, RoutesFactory, build_app
from .hub import Hub, SlowClientPolicy
from .listen_guard import GuardedLoop, WebLimits

AIOHTTP_SHUTDOWN_S = 2.0


@dataclass
class Served:
    """A listening gateway app: its runner (for cleanup), its hub, and where it listens."""

    runner: web.AppRunner
    hub: Hub
    url: str
    port: int


def port_in_use(host: str, port: int) -> MeshmeetError:
    """The error for a web port another program already holds."""
    return MeshmeetError(
        f"Cổng {port} trên {host} đang bận (một chương trình khác đang dùng), hãy chọn cổng khác",
        f"port {port} on {host} is in use by another program, choose another port",
    )


async def serve_app(
    host: str,
    port: int,
    *,
    api_call: ApiCall,
    inbound: InboundSend,
    routes_factory: RoutesFactory | None,
    static_dirs: Mapping[str, Path] | None,
    app_setup: AppSetup | Iterable[AppSetup] | None,
    slow_client_policy: SlowClientPolicy,
    client_queue_messages: int | None,
    idle_s: float = WebLimits.idle_s,
) -> Served:
    """Gateway thread: build the hub and the app and start listening. MeshmeetError if the port fails."""
    hub_kwargs: dict[str, Any] = {"policy": slow_client_policy}
    if client_queue_messages is not None:
        hub_kwargs["client_queue_messages"] = client_queue_messages
    hub = Hub(**hub_kwargs)
    app = build_app(
        api_call, hub, inbound=inbound, routes_factory=routes_factory, static_dirs=static_dirs, app_setup=app_setup
    )
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=AIOHTTP_SHUTDOWN_S, access_log=None, keepalive_timeout=idle_s
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        if e.errno == errno.EADDRINUSE:
            raise port_in_use(host, port) from e
        raise MeshmeetError(
            f"Không mở được cổng web {host}:{port}: {e.strerror}",
            f"cannot open the web port {host}:{port}: {e.strerror}",
        ) from e
    bound_host, bound_port = runner.addresses[0][:2]
    for serving in app[CONTEXT_KEY].on_serving:
        await serving(runner)  # e.g. the HTTPS site; failures there are the setup's to report
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return Served(runner=runner, hub=hub, url=f"http://{shown}:{bound_port}", port=bound_port)


def start_loop_thread(
    thread_name: str, limits: WebLimits | None = None
) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """A new guarded asyncio loop running in a new daemon thread; stop the loop to end the thread."""
    loop = GuardedLoop(limits or WebLimits())
    thread = threading.Thread(target=_run_loop, args=(loop,), name=thread_name, daemon=True)
    thread.start()
    return loop, thread


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The gateway thread: run the loop until stopped, then tidy up and close it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
