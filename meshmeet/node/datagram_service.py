"""The trio driver for media datagrams: one UDP socket per node, one channel per linked peer.

On every link up it sends the peer an offer (meshmeet/media/datagram.py) over that link (service
DATAGRAM), and builds the peer's DatagramChannel (meshmeet/media/datagram_channel.py) once the
peer's offer has come back the same way: keys are fresh per link and bound to the link's
handshake and roster. The socket is bound to the mesh port's number over UDP on the mesh listen
address (any free port if that one is taken). Datagrams go to the peer's link address at the
port it offered, and then to wherever its authentic datagrams come from (a NAT's mapping).
MediaService asks `mode(peer)`, hands popped media to `send_media`, and gets the peer's media,
keyframe wishes, transport changes and receiver reports as channel events through `on_event`.

This module must only carry bytes: never decide media quality or parse media (the sans-IO cores
do), never block (datagrams are sent without waiting; a full socket buffer is a loss), and never
let a datagram from anyone raise: garbled, forged, replayed or unknown ones are dropped and
counted.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Callable

import trio

from ..media import datagram as D
from ..media.datagram_channel import DATAGRAM, TCP, DatagramChannel, Event, ModeChanged
from ..wire import services
from . import udp_arrival
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)

RECEIVE_BUFFER_BYTES = 1 << 20  # the socket's receive buffer: seconds of audio datagrams (default ~200 KB)
RECEIVE_BYTES = 2048  # larger than any datagram we send: a longer one arrives cut and fails its tag
DISABLE_ENV = "MESHMEET_NO_DATAGRAMS"  # "1": send no offers, media stays on the TCP links
PORT_WAIT_S = 0.05
MIN_TIMER_S = 0.001  # a deadline in the past never makes the timer loop spin


class DatagramService:
    """See the module docstring. Owned and run by MediaService."""

    def __init__(self, node: "Node", *, on_event: Callable[[str, Event], None]) -> None:
        self.node = node
        self._on_event = on_event
        self.enabled = os.environ.get(DISABLE_ENV) != "1"
        self.port: int | None = None
        self._sock: socket.socket | None = None
        self._stamped = False  # the kernel stamps arrivals (udp_arrival.py)
        self._mine: dict[str, D.Offer] = {}  # peer -> what we offered on its current link
        self._theirs: dict[str, D.Offer] = {}
        self._channels: dict[str, DatagramChannel] = {}
        self._by_channel: dict[int, str] = {}  # our receive channel id -> peer
        self._endpoints: dict[str, tuple] = {}
        self._redundancy: dict[str, int] = {}
        self._wake = trio.Event()
        self.counters = {"in": 0, "out": 0, "malformed": 0, "unknown_channel": 0, "early": 0, "auth": 0, "replay": 0,
                         "send_dropped": 0, "offers_refused": 0, "errors": 0}

    def provides(self) -> Provides:
        """Service 0x80 (datagram offers) and a link listener: part of MediaService's."""
        return Provides(services={services.DATAGRAM: self._on_offer}, link_listeners=(self._on_link_change,))

    # ----- for MediaService --------------------------------------------------------------
    def mode(self, peer: str) -> str:
        ch = self._channels.get(peer)
        return ch.mode if ch is not None else TCP

    def send_media(self, peer: str, data: bytes, now: float) -> bool:
        """Carry `data` (popped by the relay for `peer`) as datagrams; False: send it over the link."""
        ch = self._channels.get(peer)
        if ch is None:
            return False
        carried = ch.send_media(data, now)
        self._flush(peer, ch)  # a config goes both ways: a datagram copy, and False for the link
        return carried

    def set_redundancy(self, peer: str, depth: int) -> None:
        """Earlier audio chunks each audio datagram to `peer` carries (0 where it does not fit)."""
        if self._redundancy.get(peer) != depth:
            log.debug("audio copies to %s: %d", peer, depth)
        self._redundancy[peer] = depth
        ch = self._channels.get(peer)
        if ch is not None:
            ch.set_redundancy(depth)

    def link_status(self, peer: str) -> dict:
        ch = self._channels.get(peer)
        fb = ch.feedback() if ch is not None else None
        rtt = ch.rtt_s if ch is not None else None

        def ms(x: float | None) -> float | None:
            return None if x is None else round(x * 1000, 1)

        loss = ch.recent_loss(trio.current_time()) if ch is not None else None
        return {"transport": self.mode(peer),
                "loss": None if loss is None else round(loss, 4),
                "jitter_ms": ms(fb.jitter_s if fb else None),
                "rtt_ms": ms(rtt),
                "delay_trend_ms": ms(fb.delay_trend_s if fb else None),
                "redundancy": ch.redundancy if ch is not None else None}

    def status(self) -> dict:
        return {"udp_port": self.port, "enabled": self.enabled, "counters": dict(self.counters),
                "channels": {p: dict(ch.counters) for p, ch in sorted(self._channels.items())}}

    # ----- offers over the link ----------------------------------------------------------
    def _on_link_change(self, peer: str, up: bool) -> None:
        self._forget(peer)
        if up and self.enabled:
            channel = self._free_channel()
            self._mine[peer] = D.Offer(channel, 1, secrets.token_bytes(D.KEY_BYTES))  # port set when sent
            self._by_channel[channel] = peer
            self._send_offer(peer)

    def _free_channel(self) -> int:
        while True:
            c = secrets.randbelow(1 << 16)
            if c not in self._by_channel:
                return c

    def _send_offer(self, peer: str) -> None:
        mine = self._mine.get(peer)
        if mine is None or self.port is None:
            return  # sent once the socket is bound (run)
        self._mine[peer] = mine = D.Offer(mine.channel, self.port, mine.key)
        self.node.send(peer, services.DATAGRAM, D.encode_offer(mine))
        self._build(peer)

    def _on_offer(self, peer: str, body: bytes) -> None:
        try:
            offer = D.parse_offer(body)
        except D.DatagramError as e:
            self.counters["offers_refused"] += 1
            log.warning("datagram offer from %s refused: %s", peer, e)
            return
        if peer in self._theirs or peer not in self._mine:
            self.counters["offers_refused"] += 1  # one offer per link; none before the link is up here
            return
        self._theirs[peer] = offer
        self._build(peer)

    def _build(self, peer: str) -> None:
        mine, theirs = self._mine.get(peer), self._theirs.get(peer)
        if mine is None or theirs is None or self.port is None or peer in self._channels:
            return
        host = self._peer_host(peer)
        if host is None:
            return
        self._endpoints[peer] = (host, theirs.port)
        self._channels[peer] = DatagramChannel(tx_key=mine.key, tx_channel=theirs.channel, rx_key=theirs.key,
                                               now=trio.current_time(),
                                               redundancy=self._redundancy.get(peer, 1))
        log.info("datagram channel to %s at %s:%d: probing", peer, host, theirs.port)
        self._wake.set()

    def _peer_host(self, peer: str) -> str | None:
        return self.node.links.peer_host(peer)

    def _forget(self, peer: str) -> None:
        mine = self._mine.pop(peer, None)
        if mine is not None:
            self._by_channel.pop(mine.channel, None)
        self._theirs.pop(peer, None)
        self._endpoints.pop(peer, None)
        if self._channels.pop(peer, None) is not None:
            self._emit(peer, [ModeChanged(TCP)])

    # ----- the socket --------------------------------------------------------------------
    def _bind(self) -> trio.socket.SocketType:
        host = self.node.cfg.listen.host or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:  # a node stalled on a loaded box finds its datagrams still there (capped by net.core.rmem_max)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except OSError:
            pass
        try:
            sock.bind((host, self.node.mesh_port or 0))
        except OSError:
            sock.bind((host, 0))
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stamped = udp_arrival.enable(sock)  # delays are the path's, not this process's stalls
        return trio.socket.from_stdlib_socket(sock)

    async def run(self) -> None:
        while self.node.mesh_port is None:
            await trio.sleep(PORT_WAIT_S)
        tsock = self._bind()
        log.info("media datagrams on UDP port %d%s", self.port, "" if self.enabled else " (disabled)")
        for peer in list(self._mine):
            self._send_offer(peer)
        with tsock:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._timers)
                while True:
                    try:
                        if self._stamped:
                            data, anc, _flags, addr = await tsock.recvmsg(RECEIVE_BYTES, udp_arrival.ANCILLARY_BYTES)
                            arrived = udp_arrival.arrival(anc, trio.current_time(), time.time())
                        else:
                            data, addr = await tsock.recvfrom(RECEIVE_BYTES)
                            arrived = None
                    except OSError as e:  # e.g. ICMP port unreachable reported on the socket
                        log.debug("datagram socket: %s", e)
                        continue
                    self._on_datagram(data, addr, arrived)

    def _on_datagram(self, data: bytes, addr: tuple, arrived: float | None = None) -> None:
        self.counters["in"] += 1
        try:
            peer = self._by_channel.get(D.peek_channel(data))
            if peer is None:
                self.counters["unknown_channel"] += 1
                return
            ch = self._channels.get(peer)
            if ch is None:  # our channel id, before the peer's offer reached us over the link: a race, not an attack
                self.counters["early"] += 1
                return
            events = ch.receive(data, trio.current_time(), arrived_at=arrived)
        except D.DatagramError as e:
            self.counters[e.reason if e.reason in self.counters else "malformed"] += 1
            return
        except Exception:  # a bug must cost one datagram, never the node
            self.counters["errors"] += 1
            log.exception("datagram from %s", addr)
            return
        self._endpoints[peer] = addr[:2]  # authentic and new: the peer is there now (roaming, NAT)
        self._emit(peer, events)
        self._flush(peer, ch)

    def _emit(self, peer: str, events: list[Event]) -> None:
        for ev in events:
            try:
                self._on_event(peer, ev)
            except Exception:  # a consumer's bug must not stop the socket or the timers
                self.counters["errors"] += 1
                log.exception("datagram event %s from %s", type(ev).__name__, peer)

    def _flush(self, peer: str, ch: DatagramChannel) -> None:
        endpoint = self._endpoints.get(peer)
        for dg in ch.datagrams_to_send():
            if self._sock is None or endpoint is None:
                self.counters["send_dropped"] += 1
                continue
            try:
                self._sock.sendto(dg, endpoint)
                self.counters["out"] += 1
            except OSError:  # buffer full (BlockingIOError), unreachable: a lost datagram
                self.counters["send_dropped"] += 1

    async def _timers(self) -> None:
        while True:
            now = trio.current_time()
            wake = math.inf
            for peer, ch in list(self._channels.items()):
                if ch.next_deadline() <= now:
                    try:
                        events = ch.tick(now)
                    except Exception:  # a bug must cost this channel a beat, never the node
                        self.counters["errors"] += 1
                        log.exception("datagram channel to %s", peer)
                        events = []
                    self._emit(peer, events)
                    self._flush(peer, ch)
                wake = min(wake, max(ch.next_deadline(), now + MIN_TIMER_S))
            self._wake = trio.Event()
            with trio.move_on_at(wake):
                await self._wake.wait()


__all__ = ["DatagramService", "DATAGRAM", "TCP"]
