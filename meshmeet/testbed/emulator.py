"""The link emulator's trio driver: a TCP proxy that delays (and optionally rate-caps) each direction.

netem is not in this kernel, so delay is added here. A node dials the proxy's listen address
(`--peer`); the proxy dials the real peer and moves bytes both ways through two DelayLines. Every
timing decision is the DelayLine's; this module only reads sockets, runs timers and writes. An end
of stream is passed on (after the data, delayed like it); a reset or error on either side aborts
both sides at once. It must never parse what it carries, nor keep a connection once one side died.

Run: python -m meshmeet.testbed.emulator --route 127.0.0.1:17000=10.77.0.2:7733,delay=0.035[,rate=1e6] ...
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass

import trio

from ..config import parse_host_port
from ..errors import MeshmeetError
from .delayline import DelayLine, EmulatorError, LinkShape

log = logging.getLogger(__name__)

READ_BYTES = 65536
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Route:
    """Accept on listen_host:listen_port, forward to target_host:target_port through `shape`."""

    listen_host: str
    listen_port: int
    target_host: str
    target_port: int
    shape: LinkShape

    def __str__(self) -> str:
        opts = f",delay={self.shape.delay_s!r}"
        if self.shape.rate_bps is not None:
            opts += f",rate={self.shape.rate_bps!r}"
        return f"{self.listen_host}:{self.listen_port}={self.target_host}:{self.target_port}{opts}"


def parse_route(text: str) -> Route:
    """Parse "HOST:PORT=HOST:PORT[,delay=S][,rate=BPS]"; EmulatorError on anything else."""
    if not isinstance(text, str) or "=" not in text:
        raise EmulatorError(f"tuyến không hợp lệ: {text!r}", f"invalid route {text!r} (expected LISTEN=TARGET,...)")
    listen_text, _, rest = text.partition("=")
    target_text, *options = rest.split(",")
    try:
        listen = parse_host_port(listen_text, what="listen")
        target = parse_host_port(target_text, what="target")
    except MeshmeetError as e:
        raise EmulatorError(e.vi, e.en) from None
    values: dict[str, float] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in ("delay", "rate") or key in values:
            raise EmulatorError(f"tùy chọn lạ: {option!r}", f"unknown or repeated option {option!r}")
        try:
            number = float(value)
        except ValueError:
            raise EmulatorError(f"{key} phải là số", f"{key} must be a number") from None
        if not math.isfinite(number):
            raise EmulatorError(f"{key} phải là số hữu hạn", f"{key} must be finite")
        values[key] = number
    shape = LinkShape(delay_s=values.get("delay", 0.0), rate_bps=values.get("rate"))
    return Route(listen.host, listen.port, target.host, target.port, shape)


class _Signal:
    """A re-armable wake-up between the reader and the writer of one direction."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait_until(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._event.wait()
        self._event = trio.Event()


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, line: DelayLine, cancel: trio.CancelScope) -> None:
    """Move one direction: read while the line has room, write what is due."""
    data_in, room_freed = _Signal(), _Signal()

    async def reader() -> None:
        while True:
            if line.room() == 0:
                await room_freed.wait_until(math.inf)
                continue
            data = await source.receive_some(min(line.room(), READ_BYTES))
            if not data:
                line.close(trio.current_time())
                data_in.set()
                return
            line.send(data, trio.current_time())
            data_in.set()

    async def writer() -> None:
        while not line.finished:
            await data_in.wait_until(line.next_deadline())
            out = line.receive(trio.current_time())
            if out.data:
                room_freed.set()
                await sink.send_all(out.data)
            if out.eof:
                await sink.send_eof()

    async def guarded(fn) -> None:
        try:
            await fn()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.debug("emulated connection aborted: %s", e)
            cancel.cancel()  # one side died: abort both, as a reset would

    async with trio.open_nursery() as nursery:
        nursery.start_soon(guarded, reader)
        nursery.start_soon(guarded, writer)


async def _serve_one(route: Route, client: trio.SocketStream) -> None:
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            upstream = await trio.open_tcp_stream(route.target_host, route.target_port)
    except (OSError, trio.TooSlowError) as e:
        log.info("%s: cannot reach %s:%d: %s", route.listen_port, route.target_host, route.target_port, e)
        await trio.aclose_forcefully(client)
        return
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, upstream, DelayLine(route.shape), nursery.cancel_scope)
            nursery.start_soon(_pump, upstream, client, DelayLine(route.shape), nursery.cancel_scope)
    finally:
        await trio.aclose_forcefully(upstream)
        await trio.aclose_forcefully(client)


async def serve_route(route: Route, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Proxy one route until cancelled; reports the bound port through task_status."""
    listeners = await trio.open_tcp_listeners(route.listen_port, host=route.listen_host)
    task_status.started(listeners[0].socket.getsockname()[1])

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _serve_one(route, stream)
        except Exception:  # a bug in one connection must never stop the others
            log.exception("%s: emulated connection failed", route.listen_port)

    await trio.serve_listeners(handler, listeners)


async def serve(routes: list[Route]) -> None:
    async with trio.open_nursery() as nursery:
        for route in routes:
            await nursery.start(serve_route, route)
            log.info("emulating %s", route)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="meshmeet userspace link emulator (delay + optional rate cap)")
    parser.add_argument("--route", action="append", default=[], required=True,
                        help="LISTEN_HOST:PORT=TARGET_HOST:PORT[,delay=S][,rate=BPS]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s emulator %(levelname)s %(message)s")
    try:
        routes = [parse_route(r) for r in args.route]
        trio.run(serve, routes)
    except MeshmeetError as e:
        print(f"meshmeet: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
