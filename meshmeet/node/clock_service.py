"""Clock probes on every link (meshmeet/wire/clock.py): on link up and every PROBE_PERIOD_S, ask
each peer its wall clock; status["clock"] holds the last offset per peer for `meshmeet doctor`.

This module must never change the node's clock or let a peer's answer steer anything but status.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from ..wire import clock, services
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node

PROBE_PERIOD_S = 300.0


def wall_ms() -> int:
    return int(time.time() * 1000)


class ClockService:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self.samples: dict[str, dict] = {}

    def provides(self) -> Provides:
        return Provides(services={services.CLOCK: self._on_message}, link_listeners=(self._on_link_change,),
                        status={"clock": lambda: dict(self.samples)})

    async def run(self) -> None:
        while True:
            await trio.sleep(PROBE_PERIOD_S)
            for peer in list(self.samples):
                self._ask(peer)

    def _ask(self, peer: str) -> None:
        self.node.send(peer, services.CLOCK, clock.make_ask(wall_ms()))

    def _on_link_change(self, peer: str, up: bool) -> None:
        if up:
            self.samples.setdefault(peer, {"offset_ms": None, "rtt_ms": None, "at": None})
            self._ask(peer)
        else:
            self.samples.pop(peer, None)

    def _on_message(self, peer: str, body: bytes) -> None:
        reply, sample = clock.on_message(body, wall_ms())
        if reply is not None:
            self.node.send(peer, services.CLOCK, reply)
        if sample is not None and peer in self.samples:
            self.samples[peer] = {"offset_ms": round(sample.offset_ms, 1), "rtt_ms": round(sample.rtt_ms, 1),
                                  "at": round(time.time(), 1)}
