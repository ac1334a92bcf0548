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
from .session import ChunkClaims, SyncSession
from .swarm import Swarm
from ..store.db import Store


@dataclass
class _Half:
    session: SyncSession
    inbox: deque[bytes] = field(default_factory=deque)  # messages travelling to this session


class SimNet:
    """Stores joined by in-memory links; `now` is a simulated clock owned by the caller."""

    def __init__(self, stores: list[Store], swarm: set[int] | None = None, sources: set[int] = frozenset(),
                 shared_claims: bool = False) -> None:
        """`swarm`: nodes with feature swarm/1 (two of them joined use it); `sources`: nodes the
        others take for sources (HQ); `shared_claims`: one ChunkClaims per node (as the node does)."""
        self.stores = stores
        self.links: dict[tuple[int, int], _Half] = {}  # (me, peer) -> my half
        self.events: list[tuple[int, Event]] = []
        self.wire_bytes = 0
        self.messages = 0
        self.sent_bytes = [0] * len(stores)   # per node, every byte it sent
        self.swarm_nodes = swarm or set()
        ids = {s.node_id: i for i, s in enumerate(stores)}
        self.swarms = [Swarm(s.node_id, lambda peer: ids[peer] in sources, lambda i=i: i in sources) if i in self.swarm_nodes else None
                       for i, s in enumerate(stores)]
        self.claims = [ChunkClaims() if shared_claims else None for _ in stores]

    def connect(self, a: int, b: int, now: float = 0.0) -> None:
        if (a, b) in self.links or a == b:
            return
        for me, peer in ((a, b), (b, a)):
            self.links[(me, peer)] = _Half(SyncSession(self.stores[me], self.stores[peer].node_id, now,
                                                       self.claims[me], swarm=self.swarms[me]))
        self._send(a, b, self.links[(a, b)].session.on_connect())
        self._send(b, a, self.links[(b, a)].session.on_connect())
        if a in self.swarm_nodes and b in self.swarm_nodes:  # as the capabilities exchange tells them
            self._send(a, b, self.links[(a, b)].session.enable_swarm(now))
            self._send(b, a, self.links[(b, a)].session.enable_swarm(now))

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
            self.sent_bytes[src] += len(o.data)
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

    def run_timed(self, now: float, step_s: float, max_steps: int = 1_000_000) -> float:
        """Deliver one message per link per `step_s` of simulated time (a link's bandwidth), with
        timers fired as they fall due, until quiet; returns the time it went quiet."""
        for _ in range(max_steps):
            busy = self.step(now)
            due = [(me, peer) for (me, peer), half in self.links.items()
                   if (d := half.session.next_deadline()) is not None and d <= now]
            for me, peer in due:
                if (me, peer) in self.links:
                    self._send(me, peer, self.links[(me, peer)].session.on_timer(now))
            if not busy and not due:
                pending = [d for h in self.links.values() if (d := h.session.next_deadline()) is not None]
                if not pending:
                    return now
                now = max(now + step_s, min(pending))
                continue
            now += step_s
        return now

    def tick(self, now: float) -> None:
        for (me, peer), half in list(self.links.items()):
            self._send(me, peer, half.session.on_timer(now))
