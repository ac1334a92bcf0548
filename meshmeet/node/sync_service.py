"""The trio driver for replicated meeting state: one Store, one SyncSession per up link.

Opens DIR/state.sqlite with authority taken from the node's roster, runs a SyncSession over
every link (service 0x20), feeds their timers, and moves their output to the links: live
messages (vectors, batches) first, document chunks only while the link's writer queue is
short, so chunks never sit in front of live traffic. New batches or chunks from one peer are
offered to the others (on_local_change). At start and whenever a document completes here it
records, for this node only, which documents it holds whole (table doc_holdings, which
doc_readiness reads for every site). Adds "sync" to status, offers reads of the store to other
services (`read`, `read_nowait`: ports.StateReader; the state API, api/state_api.py, is built on
it by the composition root) and publishes {"type": "state_changed", "tables": [...]} on gateway topic
"state" whenever replicated state changes. With MESHMEET_TEST_HOOKS=1 it also offers
`sync_test_pace` (cap the rate at which this node sends chunk pieces; tests use it to catch a
transfer in the middle).

A full disk never stops it: when the store refuses a write with DiskFull (the transaction is
rolled back whole), every sync session is closed and sync pauses, status says
{"disk": {"state": "disk_full", "free_bytes": ...}} and the state API refuses writes (507).
Every DISK_RETRY_S it looks at the free space; once DISK_RESUME_FREE_BYTES are free it closes
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
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import trio

from ..store.diskfull import DiskFull, free_bytes
from ..meeting import meetings
from ..store.chunks import CHUNK_BYTES
from ..store.errors import SyncError
from ..sync.events import Applied, BatchForged, ChangeRejected, ChunkRefused, ChunkStored, Outgoing, ProtocolViolation
from ..sync.session import ChunkClaims, SyncSession
from ..store.db import Store
from ..wire import services

if TYPE_CHECKING:
    from .node import Node
    from .ports import TreeView

log = logging.getLogger(__name__)

STATE_FILE = "state.sqlite"
STATE_TOPIC = "state"
LIVE_QUEUE_MAX_MESSAGES = 512  # live sync messages allowed to wait in a link's writer queue
BULK_QUEUE_MAX_MESSAGES = 4    # chunk pieces (60 kB each) allowed in a link's writer queue
BUSY_POLL_S = 0.005            # retry a link whose writer queue was too full after this long
RECEIVE_GROUP_MAX_MESSAGES = 16  # messages from one peer handled (batches committed) together
DISK_RETRY_S = 2.0             # while the disk is full, look at the free space this often
DISK_RESUME_FREE_BYTES = 4 * CHUNK_BYTES  # sync resumes once this much is free again

TEST_HOOKS_ENV = "MESHMEET_TEST_HOOKS"

T = TypeVar("T")


@dataclass
class _Peer:
    """Sync state for one up link: the session and what waits to go out on it."""

    session: SyncSession
    live: deque[bytes] = field(default_factory=deque)
    bulk: deque[bytes] = field(default_factory=deque)


class SyncService:
    """Owns this node's replicated store and its sync sessions; see the module docstring.

    Provides: service byte SYNC, status["sync"] and status["disk"], `StateReader` (ports.py).
    Needs: the node's links and roster; the tree (`TreeView`, optional) to know its children."""

    def __init__(self, node: "Node", *, tree: "TreeView | None" = None) -> None:
        self.node = node
        self.tree = tree
        self.disk_full_since: float | None = None  # wall time the disk was found full; None: writable
        self._disk_retry_at = math.inf
        self.store = self._open_store()
        self.claims = ChunkClaims()
        self.peers: dict[str, _Peer] = {}
        self.lock = trio.Lock()
        self.counters = {"chunks_fetched": 0, "chunks_received": 0, "chunks_served": 0, "chunks_refused": 0,
                         "batches_applied": 0, "protocol_violations": 0, "sessions": 0}
        self.adding: dict[str, Any] | None = None  # a document import in progress
        self._inbox: deque[tuple[str, str, bytes]] = deque()  # (kind, peer, body)
        self._changed_tables: set[str] = set()
        # Other parts told which tables changed (called with the lock held; must not block).
        self.change_listeners: list[Callable[[list[str]], None]] = []
        self._incomplete: set[str] | None = None  # documents not yet whole here; None: look at all
        self._chunks_arrived = False
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._in_thread = False
        self._last_status: dict[str, Any] = {}
        self._resync: set[str] = set()  # linked peers whose session was closed for a full disk
        self.pace_pieces_per_s: float | None = None  # test hook: cap on chunk pieces sent per second
        self._pace_next = 0.0
        node.services[services.SYNC] = self._on_message
        node.link_listeners.append(self._on_link_change)
        node.status_extras["sync"] = self.status
        node.status_extras["disk"] = self.disk_status
        if os.environ.get(TEST_HOOKS_ENV) == "1":
            node.api_handlers["sync_test_pace"] = self._api_test_pace

    # ----- store and roster --------------------------------------------------------------------
    def _open_store(self) -> Store:
        """The store; on a disk too full for its shared-memory file, opened for this process
        alone (sync starts paused) rather than not at all."""
        path = self.node.data_dir / STATE_FILE
        try:
            return Store(path, self.node.key, self.authority)
        except sqlite3.OperationalError as e:
            if not 0 <= free_bytes(self.node.data_dir) < DISK_RESUME_FREE_BYTES:
                raise
            log.error("sync: the disk is full (%s): the store is opened for this process alone", e)
            self.disk_full_since = time.time()
            self._disk_retry_at = -math.inf  # look at the free space as soon as the loop runs
            return Store(path, self.node.key, self.authority, exclusive=True)

    def authority(self, node_id: str) -> str | None:
        """The roster role of a node id ("hq", "hall", "relay"), None when it is not a member."""
        member = self.node.roster.member_by_node_id(node_id)
        return None if member is None else member.role

    def _may_owe(self, peer: str) -> bool:
        """May a chunk request from `peer` wait here until we have the chunk ourselves?

        Only for our tree children (without a tree: peers with a greater node id), so requests
        held for each other always point one way and can never form a cycle."""
        if self.tree is not None:
            return peer in self.tree.children()
        return peer > self.node.key.node_id

    # ----- inputs (sync callbacks: queue and wake) ---------------------------------------------
    def _on_message(self, peer: str, body: bytes) -> None:
        self._inbox.append(("msg", peer, body))
        self._wake.set()

    def _on_link_change(self, peer: str, up: bool) -> None:
        self._inbox.append(("up" if up else "down", peer, b""))
        self._wake.set()

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
                if self.disk_full_since is not None and now >= self._disk_retry_at:
                    self._try_resume(now)
                if self.disk_full_since is None and (
                        self._incomplete is None or (self._chunks_arrived and self._incomplete)):
                    self.check_holdings(now)
                self._run_timers(now)
                waiting = self._feed_links()
                self._publish_changes()
                deadline = min(self._next_deadline(), self._disk_retry_at)
            if self._inbox:
                continue
            if waiting:
                deadline = min(deadline, trio.current_time() + BUSY_POLL_S)
            with trio.move_on_at(deadline):
                await self._wake.wait()

    def _next_deadline(self) -> float:
        deadline = math.inf
        for p in self.peers.values():
            d = p.session.next_deadline()
            if d is not None:
                deadline = min(deadline, d)
        return deadline

    def _drain_inbox(self, now: float) -> None:
        while self._inbox:
            kind, peer, body = self._inbox.popleft()
            if kind == "up":
                self._drop(peer)
                if self.disk_full_since is None:
                    self._open_session(peer, now)
                else:
                    self._resync.add(peer)
            elif kind == "formats":
                p = self.peers.get(peer)
                if p is not None and not p.session.closed:
                    p.session.peer_batch_versions = frozenset(body)
                    self._queue(peer, p.session.on_local_change(now))
            elif kind == "down":
                self._drop(peer)
                self._resync.discard(peer)
                self.local_changed(now)  # chunks this link was fetching may now be asked elsewhere
            else:
                p = self.peers.get(peer)
                if p is None or p.session.closed:
                    continue
                bodies = [body]  # what else this peer sent that is waiting: its batches commit together
                while (self._inbox and len(bodies) < RECEIVE_GROUP_MAX_MESSAGES
                       and self._inbox[0][0] == "msg" and self._inbox[0][1] == peer):
                    bodies.append(self._inbox.popleft()[2])
                claimed = len(self.claims)
                try:
                    out, events = p.session.receive_many(bodies, now)
                except DiskFull:
                    self._pause_for_full_disk(now)
                    continue
                self._queue(peer, out)
                self._handle_events(peer, events, now)
                if len(self.claims) < claimed:  # chunks given up on here may be asked of other peers
                    self.local_changed(now, except_peer=peer)

    def _open_session(self, peer: str, now: float) -> None:
        session = SyncSession(self.store, peer, now, self.claims, self._may_owe)
        self.peers[peer] = _Peer(session)
        self.counters["sessions"] += 1
        self._queue(peer, session.on_connect())

    # ----- a full disk -------------------------------------------------------------------------
    def _pause_for_full_disk(self, now: float) -> None:
        """The store could not write (rolled back): close every session until space returns."""
        if self.disk_full_since is None:
            self.disk_full_since = time.time()
            log.error("sync: the disk is full (%d bytes free): sync paused until %d bytes are free",
                      free_bytes(self.node.data_dir), DISK_RESUME_FREE_BYTES)
        self._disk_retry_at = now + DISK_RETRY_S
        for peer in list(self.peers):
            self._drop(peer)
            self._resync.add(peer)

    def _try_resume(self, now: float) -> None:
        free = free_bytes(self.node.data_dir)
        if 0 <= free < DISK_RESUME_FREE_BYTES:
            self._disk_retry_at = now + DISK_RETRY_S
            return
        log.info("sync: %d bytes free again: sync resumes", free)
        self.disk_full_since = None
        self._disk_retry_at = math.inf
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
        if self.disk_full_since is not None:
            self._try_resume(now)
        if self.disk_full_since is not None:
            raise DiskFull()

    def disk_status(self) -> dict[str, Any]:
        """The "disk" part of status (docs/api.md)."""
        return {"state": "ok" if self.disk_full_since is None else "disk_full",
                "free_bytes": free_bytes(self.node.data_dir), "full_since": self.disk_full_since,
                "resume_free_bytes": DISK_RESUME_FREE_BYTES}

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
            d = p.session.next_deadline()
            if d is not None and d <= now:
                claimed = len(self.claims)
                self._queue(peer, p.session.on_timer(now))
                if len(self.claims) < claimed:
                    self.local_changed(now, except_peer=peer)

    def _drop(self, peer: str) -> None:
        p = self.peers.pop(peer, None)
        if p is not None:
            self._retire(p.session)
            p.session.close()

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

    # ----- output ------------------------------------------------------------------------------
    def _queue(self, peer: str, out: list[Outgoing]) -> None:
        p = self.peers.get(peer)
        if p is None:
            return
        for o in out:
            (p.bulk if o.bulk else p.live).append(o.data)
        if out:
            self._wake.set()

    def _feed_links(self) -> bool:
        """Move queued messages into the links' writer queues; True if some must wait."""
        waiting = False
        for peer, p in self.peers.items():
            depth = self.node.links.queue_depth(peer)
            while p.live and depth < LIVE_QUEUE_MAX_MESSAGES:
                if not self.node.send(peer, services.SYNC, p.live[0]):
                    break
                p.live.popleft()
                depth += 1
            while p.bulk and not p.live and depth < BULK_QUEUE_MAX_MESSAGES and self._paced():
                if not self.node.send(peer, services.SYNC, p.bulk[0]):
                    break
                p.bulk.popleft()
                depth += 1
                if self.pace_pieces_per_s:
                    self._pace_next = max(self._pace_next, trio.current_time()) + 1.0 / self.pace_pieces_per_s
            waiting = waiting or bool(p.live or p.bulk)
        return waiting

    def _paced(self) -> bool:
        return not self.pace_pieces_per_s or trio.current_time() >= self._pace_next

    async def _api_test_pace(self, args: dict) -> dict:
        rate = args.get("pieces_per_s")
        if rate is not None and (type(rate) not in (int, float) or rate <= 0):
            from ..api.contract import ApiError

            raise ApiError(400, "bad_request", "pieces_per_s phải > 0 hoặc null", "pieces_per_s must be > 0 or null")
        self.pace_pieces_per_s = None if rate is None else float(rate)
        self._wake.set()
        return {"pieces_per_s": self.pace_pieces_per_s}

    def peer_formats_changed(self, peer: str, batch_versions: frozenset[int], now: float) -> None:
        """The peer told its batch formats (capability_service.py): its session sends only those."""
        self._inbox.append(("formats", peer, bytes(sorted(v for v in batch_versions if 0 <= v < 256))))
        self._wake.set()

    def local_changed(self, now: float, except_peer: str | None = None, tables: set[str] | None = None) -> None:
        """The store gained batches or chunks: let every other session push what its peer lacks.

        Call with the lock held (the API handlers do)."""
        if tables:
            self._changed_tables.update(tables)
        for peer, p in self.peers.items():
            if peer != except_peer:
                self._queue(peer, p.session.on_local_change(now))
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
        for listener in self.change_listeners:
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
            counters["chunks_received"] += p.session.chunks_in
            counters["chunks_served"] += p.session.chunks_out
        peers = {peer: {"in_flight_chunks": p.session.in_flight_chunks, "queued_live": len(p.live),
                        "queued_bulk": len(p.bulk), "bytes_in": p.session.bytes_in,
                        "bytes_out": p.session.bytes_out, "in_sync_known": p.session.peer_vector is not None}
                 for peer, p in self.peers.items()}
        return {**self.store.status(), **counters, "peers": peers, "busy": False, "adding": self.adding}
