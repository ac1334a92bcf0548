"""The trio driver for replicated meeting state: one Store, one SyncSession per up link.

Opens DIR/state.sqlite with authority taken from the node's roster, runs a SyncSession over every link
(service 0x20) on what `SyncInbox` (node/sync_inbox.py) queued, feeds their timers, and moves their output to
the links through `SyncOutbox` (node/sync_outbox.py: live traffic first, document chunks behind it). New
batches or chunks from one peer are offered to the others (on_local_change); its sessions share chunk claims
and a Swarm (sync/swarm.py; HQ is the source). At start and whenever a document completes here it records, for
this node only, which documents it holds whole (table doc_holdings, which doc_readiness reads for every site).
Adds "sync" to status, offers reads of the store to other services (`read`, `read_nowait`: ports.StateReader;
the state API, api/state_api.py, is built on it by the composition root) and publishes {"type":
"state_changed", "tables": [...]} on gateway topic "state" whenever replicated state changes. With
MESHMEET_TEST_HOOKS=1 it also offers `sync_test_pace` (cap the rate at which this node sends chunk pieces;
tests use it to catch a transfer in the middle).

A full disk never stops it: when the store refuses a write with DiskFull (the transaction is
rolled back whole), every sync session is closed and sync pauses, status says
{"disk": {"state": "disk_full", "free_bytes": ...}} and the state API refuses writes (507).
Every DISK_RETRY_S it looks at the free space (disk_watch.py); once DISK_RESUME_FREE_BYTES are free it closes
the links whose session it closed (once; they are redialled at once), so that both ends start
fresh sessions whose vector exchange brings back every batch and chunk that could not be
stored (nothing is lost: what was not committed is simply not held here).

All store access happens on the trio thread inside `self.lock`, except a document import,
which runs in a worker thread while holding the lock (messages arriving meanwhile wait in the
inbox). This module must never decide sync protocol behaviour (the sans-IO SyncSession does),
never block a link handler, and never touch the store outside the lock.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import trio

from ..store.diskfull import DiskFull
from ..meeting import meetings
from ..store.errors import SyncError
from ..sync.events import Applied, BatchForged, ChangeRejected, ChunkRefused, ChunkStored, Outgoing, ProtocolViolation
from ..sync.session import ChunkClaims, SyncSession, Swarm
from ..store.db import Store
from ..wire import services
from .disk_watch import DiskWatch
from .provides import Provides
from .sync_inbox import RECEIVE_GROUP_MAX_MESSAGES, SyncInbox
from .sync_outbox import BULK_QUEUE_MAX_MESSAGES, BUSY_POLL_S, LIVE_QUEUE_MAX_MESSAGES, SyncOutbox

if TYPE_CHECKING:
    from .node import Node
    from .ports import TreeView

log = logging.getLogger(__name__)

STATE_FILE = "state.sqlite"
STATE_TOPIC = "state"

TEST_HOOKS_ENV = "MESHMEET_TEST_HOOKS"
T = TypeVar("T")

__all__ = ["BULK_QUEUE_MAX_MESSAGES", "BUSY_POLL_S", "LIVE_QUEUE_MAX_MESSAGES", "RECEIVE_GROUP_MAX_MESSAGES",
           "STATE_FILE", "STATE_TOPIC", "SyncService"]


class SyncService:
    """Owns this node's replicated store and its sync sessions; see the module docstring.

    Provides: service byte SYNC, status["sync"] and status["disk"], `StateReader` (ports.py).
    Needs: the node's links and roster; the tree (`TreeView`, optional) to know its children."""

    def __init__(self, node: "Node", *, tree: "TreeView | None" = None) -> None:
        self.node = node
        self.tree = tree
        self.disk = DiskWatch(node.data_dir)
        self.store = self.disk.open_store(node.data_dir / STATE_FILE, node.key, self.authority)
        self.claims = ChunkClaims()
        self.swarm = Swarm(node.key.node_id, lambda peer: self.authority(peer) == "hq",
                           lambda: self.authority(node.key.node_id) == "hq")  # HQ is the source
        self.peers: dict[str, SyncSession] = {}  # one session per up link
        self.outbox = SyncOutbox(node.links.queue_depth, lambda peer, body: node.send(peer, services.SYNC, body),
                                 trio.current_time)
        self.lock = trio.Lock()
        self.counters = {"chunks_fetched": 0, "chunks_received": 0, "chunks_served": 0, "chunks_refused": 0,
                         "batches_applied": 0, "protocol_violations": 0, "sessions": 0}
        self.adding: dict[str, Any] | None = None  # a document import in progress
        self._inbox = SyncInbox(lambda: self._wake.set())  # what link callbacks queued for the loop
        self._changed_tables: set[str] = set()
        self._change_listeners: list[Callable[[list[str]], None]] = []  # on_tables_changed
        self._incomplete: set[str] | None = None  # documents not yet whole here; None: look at all
        self._chunks_arrived = False
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._in_thread = False
        self._last_status: dict[str, Any] = {}
        self._resync: set[str] = set()  # linked peers whose session was closed for a full disk

    def on_tables_changed(self, listener: Callable[[list[str]], None]) -> None:
        """`listener(tables)` after each change to the store (with the lock held: it must not block)."""
        self._change_listeners.append(listener)

    def provides(self) -> Provides:
        test_hooks = os.environ.get(TEST_HOOKS_ENV) == "1"
        return Provides(services={services.SYNC: self._inbox.message}, link_listeners=(self._inbox.link_changed,),
                        status={"sync": self.status, "disk": self.disk.status},
                        apis={"sync_test_pace": self._api_test_pace} if test_hooks else {})

    # ----- store and roster --------------------------------------------------------------------
    def authority(self, node_id: str) -> str | None:
        """The roster role of a node id ("hq", "hall", "relay"), None when it is not a member."""
        member = self.node.roster.member_by_node_id(node_id)
        return None if member is None else member.role

    def _may_owe(self, peer: str) -> bool:
        """May a chunk request from `peer` wait here until we have the chunk ourselves? Only for our
        tree children (no tree: peers with a greater node id): held requests never form a cycle."""
        if self.tree is not None:
            return peer in self.tree.children()
        return peer > self.node.key.node_id

    # ----- running -----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                async with self.lock:
                    self.check_holdings(trio.current_time())
                await self._loop()
        finally:
            with trio.CancelScope(shield=True):
                async with self.lock:
                    self.store.close()

    async def _loop(self) -> None:
        while True:
            self._wake = trio.Event()
            async with self.lock:
                now = trio.current_time()
                self._drain_inbox(now)
                if self.disk.due(now):
                    self._try_resume(now)
                if not self.disk.full and (
                        self._incomplete is None or (self._chunks_arrived and self._incomplete)):
                    self.check_holdings(now)
                self._run_timers(now)
                waiting = self.outbox.feed()  # True: some must wait for a shorter writer queue
                self._publish_changes()
                deadline = min(self._next_deadline(), self.disk.retry_at)
            if self._inbox:
                continue
            if waiting:
                deadline = min(deadline, trio.current_time() + BUSY_POLL_S)
            with trio.move_on_at(deadline):
                await self._wake.wait()

    def _next_deadline(self) -> float:
        deadline = math.inf
        for p in self.peers.values():
            d = p.next_deadline()
            if d is not None:
                deadline = min(deadline, d)
        return deadline

    def _drain_inbox(self, now: float) -> None:
        while self._inbox:
            arrival = self._inbox.take()
            kind, peer = arrival.kind, arrival.peer
            if kind == "up":
                self._drop(peer)
                if not self.disk.full:
                    self._open_session(peer, now)
                else:
                    self._resync.add(peer)
            elif kind == "formats":
                p = self.peers.get(peer)
                if p is not None and not p.closed:
                    p.peer_batch_versions = arrival.formats
                    self._queue(peer, (p.enable_swarm(now) if arrival.swarm else []) + p.on_local_change(now))
            elif kind == "down":
                self._drop(peer)
                self._resync.discard(peer)
                self.local_changed(now)  # chunks this link was fetching may now be asked elsewhere
            else:
                p = self.peers.get(peer)
                if p is None or p.closed:
                    continue
                claimed = len(self.claims)
                try:
                    out, events = p.receive_many(arrival.bodies, now)
                except DiskFull:
                    self._pause_for_full_disk(now)
                    continue
                self._queue(peer, out)
                self._handle_events(peer, events, now)
                if len(self.claims) < claimed:  # chunks given up on here may be asked of other peers
                    self.local_changed(now, except_peer=peer)

    def _open_session(self, peer: str, now: float) -> None:
        session = SyncSession(self.store, peer, now, self.claims, self._may_owe, swarm=self.swarm)
        self.peers[peer] = session
        self.outbox.open(peer)
        self.counters["sessions"] += 1
        self._queue(peer, session.on_connect())

    # ----- a full disk -------------------------------------------------------------------------
    def _pause_for_full_disk(self, now: float) -> None:
        """The store could not write (rolled back): close every session until space returns."""
        self.disk.found_full(now)
        for peer in list(self.peers):
            self._drop(peer)
            self._resync.add(peer)

    def _try_resume(self, now: float) -> None:
        if not self.disk.space_back(now):
            return
        up = set(self.node.links.up_peers())
        for peer in sorted(self._resync & up):
            # Both ends need a fresh session (the peer's still counts on batches it sent us that
            # were rolled back): the link is closed and redialled, and the new sessions' vector
            # exchange brings back every batch and chunk that could not be stored.
            self._close_link(peer, "sync resumes after a full disk")
        self._resync.clear()
        self._incomplete = None  # look at every document's holding again

    def note_disk_full(self, now: float) -> None:
        """A write through the API hit a full disk; call with the lock held."""
        self._pause_for_full_disk(now)

    def check_writable(self, now: float) -> None:
        """Raise DiskFull while the disk is known to be full (looked at afresh); call with the lock held."""
        if self.disk.full:
            self._try_resume(now)
        if self.disk.full:
            raise DiskFull()

    def _handle_events(self, peer: str, events: list, now: float) -> None:
        grew = False
        for e in events:
            if isinstance(e, Applied):
                grew = True
                self.counters["batches_applied"] += 1
                self._changed_tables.update(e.tables)
                if "documents" in e.tables:
                    self._incomplete = None
            elif isinstance(e, ChunkStored):
                grew = True
                self.counters["chunks_fetched"] += 1
                self._chunks_arrived = True
            elif isinstance(e, ChunkRefused):
                self.counters["chunks_refused"] += 1
            elif isinstance(e, ChangeRejected):  # counted by the store (rejected_changes)
                log.warning("sync: change %s:%d from %s rejected: %s", e.origin, e.seq, peer, e.reason)
            elif isinstance(e, BatchForged):  # counted by the store (forged_batches)
                log.warning("sync: forged batch from %s dropped: %s", peer, e.reason)
            elif isinstance(e, ProtocolViolation):
                self.counters["protocol_violations"] += 1
                log.warning("sync: protocol violation from %s (%s): closing the link", peer, e.reason)
                self._drop(peer)
                self._close_link(peer, f"sync protocol violation: {e.reason}")
        if grew:
            self.local_changed(now, except_peer=peer)

    def _run_timers(self, now: float) -> None:
        for peer, p in list(self.peers.items()):
            d = p.next_deadline()
            if d is not None and d <= now:
                claimed = len(self.claims)
                self._queue(peer, p.on_timer(now))
                if len(self.claims) < claimed:
                    self.local_changed(now, except_peer=peer)

    def _drop(self, peer: str) -> None:
        p = self.peers.pop(peer, None)
        self.outbox.drop(peer)
        if p is not None:
            self._retire(p)
            p.close()

    def _retire(self, session: SyncSession) -> None:
        self.counters["chunks_received"] += session.chunks_in
        self.counters["chunks_served"] += session.chunks_out
        session.chunks_in = session.chunks_out = 0

    def _close_link(self, peer: str, reason: str) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self.node.links.close_link, peer, reason)

    # ----- reads for other services (ports.StateReader) ---------------------------------------
    async def read(self, query: Callable[[Store], T]) -> T:
        """`query`'s answer, run on the store while no sync write is in progress."""
        async with self.lock:
            return query(self.store)

    def read_nowait(self, query: Callable[[Store], T]) -> T | None:
        """`query`'s answer now, or None when the store is busy (for callers that must not wait)."""
        try:
            self.lock.acquire_nowait()
        except trio.WouldBlock:
            return None
        try:
            return query(self.store)
        finally:
            self.lock.release()

    # ----- output (node/sync_outbox.py) -------------------------------------------------------
    def _queue(self, peer: str, out: list[Outgoing]) -> None:
        if peer in self.peers and self.outbox.put(peer, out):
            self._wake.set()

    @property
    def pace_pieces_per_s(self) -> float | None:  # test hook: the cap on chunk pieces sent per second
        return self.outbox.pace_pieces_per_s

    @pace_pieces_per_s.setter
    def pace_pieces_per_s(self, rate: float | None) -> None:
        self.outbox.pace_pieces_per_s = rate

    async def _api_test_pace(self, args: dict) -> dict:
        answer = self.outbox.api_test_pace(args)
        self._wake.set()
        return answer

    def peer_formats_changed(self, peer: str, batch_versions: frozenset[int], now: float, swarm: bool = False) -> None:
        """The peer's batch formats (its session sends only those) and feature swarm/1 (capability_service.py)."""
        self._inbox.formats(peer, batch_versions, swarm)

    def local_changed(self, now: float, except_peer: str | None = None, tables: set[str] | None = None) -> None:
        """The store gained batches or chunks: let every other session push what its peer lacks.

        Call with the lock held (the API handlers do)."""
        if tables:
            self._changed_tables.update(tables)
        for peer, p in self.peers.items():
            if peer != except_peer:
                self._queue(peer, p.on_local_change(now))
        self._wake.set()

    def check_holdings(self, now: float, all_documents: bool = False) -> list[str]:
        """Record this node's holding of each document that is now whole here; call with the lock held.

        Looks only at documents known to be incomplete, unless documents changed (or
        `all_documents`). Never raises: a refusal (e.g. not on the roster yet) is logged and
        tried again when documents next change."""
        candidates = None if all_documents else self._incomplete
        self._chunks_arrived = False
        try:
            recorded, self._incomplete = meetings.record_holdings(self.store, candidates)
        except SyncError as e:
            log.warning("sync: cannot record document holdings: %s", e.en)
            self._incomplete = set()
            return []
        except DiskFull:
            self._pause_for_full_disk(now)
            return []
        if recorded:
            log.info("sync: documents now held whole here: %s", ", ".join(recorded))
            self.local_changed(now, tables={"doc_holdings"})
        return recorded

    def _publish_changes(self) -> None:
        if not self._changed_tables:
            return
        gateway = self.node.gateway
        tables = sorted(self._changed_tables)
        self._changed_tables.clear()
        for listener in self._change_listeners:
            listener(tables)
        if gateway is not None:
            gateway.try_publish(STATE_TOPIC, {"type": "state_changed", "tables": tables})

    # ----- helpers for the API -----------------------------------------------------------------
    async def in_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn` (which uses the store) in a worker thread; call with the lock held."""
        self._last_status = self._status_now()
        self._in_thread = True
        try:
            return await trio.to_thread.run_sync(fn)
        finally:
            self._in_thread = False

    # ----- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        if self._in_thread:  # the store is busy in a worker thread: last known figures
            return {**self._last_status, "busy": True, "adding": self.adding}
        self._last_status = self._status_now()
        return self._last_status

    def _status_now(self) -> dict[str, Any]:
        counters = dict(self.counters)
        for p in self.peers.values():
            counters["chunks_received"] += p.chunks_in
            counters["chunks_served"] += p.chunks_out
        peers = {}
        for peer, p in self.peers.items():
            live, bulk = self.outbox.queued(peer)
            peers[peer] = {"in_flight_chunks": p.in_flight_chunks, "queued_live": live, "queued_bulk": bulk, "bytes_in":
                           p.bytes_in, "bytes_out": p.bytes_out, "in_sync_known": p.peer_vector is not None,
                           "swarm": p.announcer is not None}
        return {**self.store.status(), **counters, "peers": peers, "busy": False, "adding": self.adding}
