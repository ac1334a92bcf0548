"""The trio driver of the stream-key gate (meshmeet/ingest/push_gate.py) on a listening ingest's port.

`serve_gate` listens on the port the chair named; for each encoder it feeds what arrives to a
gate, opens a loopback connection to FFmpeg (the ingest worker listening on `upstream_port`) only
once the gate approves a first byte (waiting up to UPSTREAM_WAIT_S while it restarts), forwards what the gate approved, and after the key both
directions pass untouched. At most MAX_GATE_CONNECTIONS encoders at once; one that has not shown
its key within KEY_DEADLINE_S is closed. Counts what it refused for status.

This module must never forward a byte the gate has not judged, nor parse media.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..ingest.push_gate import GateRefused, RtmpGate, RtspGate
from .link import peer_address

log = logging.getLogger(__name__)

MAX_GATE_CONNECTIONS = 4
KEY_DEADLINE_S = 10.0
READ_BYTES = 65536
UPSTREAM_WAIT_S = 5.0    # an encoder arriving while FFmpeg restarts waits this long for it
UPSTREAM_RETRY_S = 0.1
GATES: dict[str, Callable[[str], RtmpGate | RtspGate]] = {"rtmp": RtmpGate, "rtsp": RtspGate}


@dataclass
class GateCounters:
    accepted: int = 0        # encoders that showed the key
    refused: int = 0         # connections closed for what they sent (or sent nothing in time)
    busy: int = 0            # connections over MAX_GATE_CONNECTIONS
    upstream_down: int = 0   # the key was fine but FFmpeg was not listening (a restart in between)
    last_refused: str = ""
    open_now: int = 0

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "refused": self.refused, "busy": self.busy,
                "upstream_down": self.upstream_down, "last_refused": self.last_refused}


async def serve_gate(protocol: str, bind: str, port: int, upstream_port: int, key: str, counters: GateCounters,
                     *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Listen on bind:port (OSError if it cannot: the caller says so) and gate every connection."""
    make = GATES[protocol]
    listeners = await trio.open_tcp_listeners(port, host=bind)
    task_status.started()

    async def handle(stream: trio.SocketStream) -> None:
        if counters.open_now >= MAX_GATE_CONNECTIONS:
            counters.busy += 1
            await stream.aclose()
            return
        counters.open_now += 1
        try:
            await _relay(stream, make(key), upstream_port, counters)
        finally:
            counters.open_now -= 1

    await trio.serve_listeners(handle, listeners)


async def _relay(client: trio.SocketStream, gate, upstream_port: int, counters: GateCounters) -> None:
    peer, upstream = peer_address(client), _Upstream(upstream_port, counters)
    try:
        async with trio.open_nursery() as nursery:
            refused = await _until_key(client, gate, upstream, nursery)
            if refused is None and gate.passed:
                counters.accepted += 1
                log.info("ingest gate: %s showed the stream key", peer)
                await _pump(client, upstream.stream, nursery.cancel_scope)
            else:
                if refused:
                    counters.refused += 1
                    counters.last_refused = refused
                    log.info("ingest gate: refused %s: %s", peer, refused)
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for s in (upstream.stream, client):
                if s is not None:
                    await s.aclose()


class _Upstream:
    """FFmpeg's loopback listener, opened at the first approved byte; its answers pumped back."""

    def __init__(self, port: int, counters: GateCounters) -> None:
        self.port, self.counters = port, counters
        self.stream: trio.SocketStream | None = None

    async def send(self, data: bytes, client: trio.SocketStream, nursery: trio.Nursery) -> bool:
        waited = 0.0
        while self.stream is None:
            try:
                self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            except OSError:
                if waited >= UPSTREAM_WAIT_S:  # FFmpeg restarting takes ~1 s; not back: give up
                    self.counters.upstream_down += 1
                    return False
                await trio.sleep(UPSTREAM_RETRY_S)
                waited += UPSTREAM_RETRY_S
                continue
            nursery.start_soon(_pump, self.stream, client, nursery.cancel_scope)
        await self.stream.send_all(data)
        return True


async def _until_key(client: trio.SocketStream, gate, upstream: _Upstream, nursery: trio.Nursery) -> str | None:
    """Feed the gate until it passes (None) or refuses (the reason); None also when either side left."""
    try:
        with trio.move_on_after(KEY_DEADLINE_S):
            while not gate.passed:
                data = await client.receive_some(READ_BYTES)
                if not data:
                    return None
                got = gate.feed(data)
                if got.forward and not await upstream.send(got.forward, client, nursery):
                    return None
            return None
        return f"no stream key within {KEY_DEADLINE_S:.0f} s"
    except GateRefused as e:
        return str(e)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return None


async def _pump(src: trio.SocketStream, dst: trio.SocketStream, done: trio.CancelScope) -> None:
    try:
        while data := await src.receive_some(READ_BYTES):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    done.cancel()
