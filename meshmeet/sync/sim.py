"""An in-memory network of sync sessions, for tests, the benchmark and simulations.

Nodes are Stores; links are pairs of SyncSessions joined by ordered, reliable in-memory
queues (like TCP). `run` delivers messages until everything is quiet, forwarding new
batches to a node's other links as a real driver would. Links can be cut at any moment,
dropping what was in flight. This module must never sleep, read a clock or open sockets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .events import Applied, ChunkStored, Event, Outgoing
from .session import SyncSession
from ..store.db import Store


@dataclass
class _Half:
    session: SyncSession
    inbox: deque[bytes] = field(default_factory=deque)  # messages travelling to this session


class SimNet:
    """Stores joined by in-memory links; `now` is a simulated clock owned by the caller."""

    def __init__(self, stores: list[Store]) -> None:
        self.stores = stores
        self.links: dict[tuple[int, int], _Half] = {}  # (me, peer) -> my half
        self.events: list[tuple[int, Event]] = []
        self.wire_bytes = 0
        self.messages = 0

    def connect(self, a: int, b: int, now: float = 0.0) -> None:
        if (a, b) in self.links or a == b:
            return
        self.links[(a, b)] = _Half(SyncSession(self.stores[a], self.stores[b].node_id, now))
        self.links[(b, a)] = _Half(SyncSession(self.stores[b], self.stores[a].node_id, now))
        self._send(a, b, self.links[(a, b)].session.on_connect())
        self._send(b, a, self.links[(b, a)].session.on_connect())

    def disconnect(self, a: int, b: int) -> None:
        self.links.pop((a, b), None)
        self.links.pop((b, a), None)

    def connected(self, a: int, b: int) -> bool:
        return (a, b) in self.links

    def changed(self, node: int, now: float = 0.0, except_peer: int | None = None) -> None:
        """Tell node's sessions that its store has new batches."""
        for (me, peer), half in list(self.links.items()):
            if me == node and peer != except_peer:
                self._send(me, peer, half.session.on_local_change(now))

    def _send(self, src: int, dst: int, out: list[Outgoing]) -> None:
        half = self.links.get((dst, src))
        for o in out:
            self.wire_bytes += len(o.data)
            self.messages += 1
            if half is not None:
                half.inbox.append(o.data)

    def step(self, now: float = 0.0) -> bool:
        """Deliver one message on each link that has one; False when all are quiet."""
        busy = False
        for (me, peer) in list(self.links):
            half = self.links.get((me, peer))
            if half is None or not half.inbox:
                continue
            busy = True
            out, events = half.session.receive(half.inbox.popleft(), now)
            self._send(me, peer, out)
            self.events.extend((me, e) for e in events)
            if any(isinstance(e, (Applied, ChunkStored)) for e in events):
                self.changed(me, now, except_peer=peer)
        return busy

    def run(self, now: float = 0.0, max_rounds: int = 1_000_000) -> int:
        """Deliver until quiet, running timers that are due at `now` (as a driver would)."""
        rounds = 0
        while rounds < max_rounds:
            if self.step(now):
                rounds += 1
                continue
            due = [(me, peer) for (me, peer), half in self.links.items()
                   if (d := half.session.next_deadline()) is not None and d <= now]
            if not due:
                break
            for me, peer in due:
                self._send(me, peer, self.links[(me, peer)].session.on_timer(now))
        return rounds

    def tick(self, now: float) -> None:
        for (me, peer), half in list(self.links.items()):
            self._send(me, peer, half.session.on_timer(now))
