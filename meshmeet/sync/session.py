"""SyncSession: the sans-IO anti-entropy protocol with one peer over one link.

On connect both sides send a Hello with a 16-byte hash of their version vector; if the
hashes match the session is in sync after one small message each way. Otherwise both send
their vectors and then every batch the other lacks (a side that gets a Vector before sending
its own answers with its own, so a change made while the Hellos cross is not missed). New
batches are pushed as the store gains them (`on_local_change`). Document chunks are pulled
with a small window of Want requests and arrive in pieces; every chunk is checked against
its SHA-256 before it is stored. A request for a chunk this node is itself still fetching is
held and answered when the chunk arrives, but only when `may_owe(peer)` allows it (the driver
allows it towards tree children, so held requests can never wait on each other in a cycle)
and never when this node is fetching that chunk from the same peer. Outgoing chunk traffic is flagged `bulk` so the
driver can queue it behind live traffic. Sessions of one node may share a ChunkClaims, so that
two peers are never asked for the same chunk at once; with a shared Swarm, once the driver says the
peer has feature swarm/1 (`enable_swarm`), both sides announce held chunks (HAVE) and chunks are
asked only of peers that announced them, as sync/swarm.py chooses. The session takes bytes and `now` and returns
bytes, events and a deadline; it must never do I/O itself, read a clock, or raise on bad
input (hostile bytes become a ProtocolViolation event).
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

from ..store.batch import BATCH_VERSION, BATCH_VERSION_V2, ForgedBatchError, SignedBatch, batch_format, decode_batch
from ..store.errors import ProtocolError
from .events import (Applied, BatchForged, ChangeRejected, ChunkRefused, ChunkStored, Event, InSync, Outgoing,
                     ProtocolViolation)
from .messages import (CHUNK_PIECE_BYTES, Batch, Chunk, Have, Hello, Message, NoChunk, Vector, Want, decode,
                       encode, vector_hash)
from .swarm import SWARM_SCAN_CHUNKS, Announcer, Swarm
from ..store.db import Store

log = logging.getLogger(__name__)

CHUNK_WINDOW = 8             # chunk requests in flight per peer
CHUNK_TIMEOUT_S = 30.0       # re-ask for a chunk not delivered within this
CHUNK_RETRY_S = 5.0          # re-ask a peer for a chunk it said it lacked after this
MAX_BATCHES_PER_PUSH = 1000   # more than this waits for on_timer (next_deadline says "now")
MAX_OWED_CHUNKS = 64         # peer requests we hold open while fetching the chunk ourselves


class ChunkClaims:
    """Which session of this node is fetching which chunk (shared by the sessions of one store).

    A chunk is asked of one peer at a time; a claim ends when the chunk arrives, the peer says
    it lacks it, the request times out, or the session closes.
    """

    def __init__(self) -> None:
        self._owner: dict[bytes, object] = {}

    def take(self, sha256: bytes, owner: object) -> bool:
        if self._owner.setdefault(sha256, owner) is owner:
            return True
        return False

    def release(self, sha256: bytes, owner: object) -> None:
        if self._owner.get(sha256) is owner:
            del self._owner[sha256]

    def owner(self, sha256: bytes) -> object | None:
        return self._owner.get(sha256)

    def release_all(self, owner: object) -> None:
        for h in [h for h, o in self._owner.items() if o is owner]:
            del self._owner[h]

    def __len__(self) -> int:
        return len(self._owner)


LEGACY_BATCH_VERSIONS = frozenset({BATCH_VERSION_V2, BATCH_VERSION})  # what a peer without capabilities takes


def _pieces(sha256: bytes, data: bytes) -> list[Chunk]:
    return [Chunk(sha256, off, len(data), data[off:off + CHUNK_PIECE_BYTES])
            for off in range(0, len(data), CHUNK_PIECE_BYTES)]


class SyncSession:
    """Sync state for one peer link."""

    def __init__(self, store: Store, peer_node_id: str, now: float, claims: ChunkClaims | None = None,
                 may_owe: Callable[[str], bool] | None = None, swarm: Swarm | None = None) -> None:
        self.store = store
        self.swarm = swarm
        self.announcer: Announcer | None = None  # once the peer announced feature swarm/1 (swarm.py)
        self.may_owe = may_owe
        self.claims = claims if claims is not None else ChunkClaims()
        self.peer_node_id = peer_node_id
        self.started = now
        self.closed = False
        self.peer_vector: dict[str, int] | None = None  # per origin, the peer holds 1..n (gap-free)
        self._peer_ahead: dict[str, dict[int, int]] = {}  # batches it holds past a gap: first -> last
        self._asked: dict[bytes, float] = {}            # chunk -> when we asked
        self._lacking: dict[bytes, float] = {}          # chunk -> when we may ask this peer again
        self._vector_sent = False
        self._more_to_push = False
        self._owed: set[bytes] = set()
        self._partial: dict[bytes, bytearray] = {}      # chunk -> pieces received so far
        self._piece_at = float("-inf")                  # when a piece we asked for last came
        self.bytes_in = 0
        self.bytes_out = 0
        self.chunks_in = 0    # whole chunks received (stored, duplicate or corrupt)
        self.chunks_out = 0   # whole chunks sent to the peer
        # Batch formats the peer accepts (wire/capabilities.py; LEGACY until it says): a batch in
        # another format is withheld, with every later batch of its origin (the peer's vector
        # stays gap-free), never sent for the peer to close the link on.
        self.peer_batch_versions: frozenset[int] = LEGACY_BATCH_VERSIONS
        self.withheld_batches = 0

    # ------------------------------------------------------------------ driver API
    def on_connect(self) -> list[Outgoing]:
        return self._out([Hello(vector_hash(self.store.version_vector()))])

    def enable_swarm(self, now: float) -> list[Outgoing]:
        """The peer announced feature swarm/1: tell it what we hold, and from now on each new chunk."""
        if self.swarm is None or self.announcer is not None or self.closed:
            return []
        self.announcer = Announcer(self.store, now)
        self.swarm.peer_has(self.peer_node_id, ())  # a swarm peer from now on, holding nothing yet
        return self._out(list(self.announcer.inventory), bulk=True) + self._request_chunks(now)

    def receive(self, data: bytes, now: float) -> tuple[list[Outgoing], list[Event]]:
        """Handle one message from the peer."""
        return self.receive_many([data], now)

    def receive_many(self, datas: Sequence[bytes], now: float) -> tuple[list[Outgoing], list[Event]]:
        """Handle messages that arrived together, in order, as `receive` would one by one,
        except that consecutive BATCH messages are applied in one store transaction (and each
        of their `Applied` events names the tables the whole run touched): every
        commit rewrites the last pages of each table it touched, so a bulk transfer applies
        faster in groups (~13 % with 16 batches of 53 KB). The driver passes what is waiting."""
        if self.closed:
            return [], []
        out: list[Outgoing] = []
        events: list[Event] = []
        batches: list[SignedBatch] = []
        try:
            for data in datas:
                self.bytes_in += len(data) if isinstance(data, (bytes, bytearray)) else 0
                msg = decode(data)
                if isinstance(msg, Batch):
                    batch = self._verified(msg, events)
                    if batch is not None:
                        batches.append(batch)
                    continue
                self._apply_batches(batches, now, out, events)
                more_out, more_events = self._handle(msg, now)
                out += more_out
                events += more_events
        except ProtocolError as exc:
            self._apply_batches(batches, now, out, events)  # the good ones before it still count
            self.closed = True
            log.warning("sync protocol violation from %s: %s", self.peer_node_id, exc.reason)
            return out, events + [ProtocolViolation(exc.reason)]
        self._apply_batches(batches, now, out, events)
        return out, events

    def on_local_change(self, now: float) -> list[Outgoing]:
        """The store gained batches (local writes or from another peer): push what the peer lacks."""
        if self.closed or self.peer_vector is None:
            return []
        return self._push() + self._serve_owed() + self._announce(now) + self._request_chunks(now)

    def close(self) -> None:
        """The link is gone: give up this session's chunk requests so other sessions can ask."""
        self.closed = True
        self.claims.release_all(self)
        if self.swarm is not None:
            self.swarm.peer_gone(self.peer_node_id)
        self._asked.clear()
        self._partial.clear()

    def next_deadline(self) -> float | None:
        """When on_timer should run next; -inf means at once (more batches are waiting)."""
        if self.closed:
            return None
        if self._more_to_push:
            return float("-inf")
        times = [t + CHUNK_TIMEOUT_S for t in self._asked.values()] + list(self._lacking.values())
        have_at = self.announcer.deadline() if self.announcer is not None else None
        times += [have_at] if have_at is not None else []
        return min(times) if times else None

    def on_timer(self, now: float) -> list[Outgoing]:
        if self.closed:
            return []
        for h, asked in list(self._asked.items()):
            if asked + CHUNK_TIMEOUT_S <= now:
                del self._asked[h]
                self.claims.release(h, self)
                if self.announcer is not None:  # a trader that announced it and did not send it
                    self.swarm.timed_out(self.peer_node_id, h, sending=now - self._piece_at < CHUNK_TIMEOUT_S)
                self._partial.pop(h, None)
        for h, until in list(self._lacking.items()):
            if until <= now:
                del self._lacking[h]
        out = self._push() if self._more_to_push else []
        return out + self._announce(now) + self._request_chunks(now)

    @property
    def in_flight_chunks(self) -> int:
        return len(self._asked)

    # ------------------------------------------------------------------ handlers
    def _handle(self, msg: Message, now: float) -> tuple[list[Outgoing], list[Event]]:
        if isinstance(msg, Hello):
            mine = self.store.version_vector()
            if msg.vector_hash == vector_hash(mine):
                self.peer_vector = dict(mine)
                return self._push() + self._request_chunks(now), [InSync()]
            self._vector_sent = True
            return self._out([Vector(mine)]), []
        if isinstance(msg, Vector):
            self.peer_vector = dict(msg.vector)
            self._peer_ahead.clear()
            out = []
            if not self._vector_sent:  # our Hello matched when it left, but the peer has moved on
                self._vector_sent = True
                out = self._out([Vector(self.store.version_vector())])
            return out + self._push() + self._request_chunks(now), []
        if isinstance(msg, Want):
            out: list[Outgoing] = []
            lacking = []
            for h in msg.hashes:
                data = self.store.get_chunk(h)
                if data is None and self._asked.pop(h, None) is not None:
                    # We asked this peer for it and it asks us back: it lacks it too.
                    self.claims.release(h, self)
                    self._partial.pop(h, None)
                    self._lacking[h] = now + CHUNK_RETRY_S
                    lacking.append(h)
                elif data is None and self._may_owe(h) and self.store.is_wanted(h):
                    self._owed.add(h)  # we are fetching it ourselves: send it when it arrives
                elif data is None or (self.announcer is not None and not self.swarm.serve(self.peer_node_id, h, now)):
                    lacking.append(h)  # (a source tells a meshed swarm peer to fetch it from the mesh)
                else:
                    out += self._send_chunk(h, data)
            if lacking:
                out += self._out([NoChunk(tuple(lacking))], bulk=True)
            return out, []
        if isinstance(msg, Chunk):
            return self._on_chunk(msg, now)
        if isinstance(msg, Have):
            if self.swarm is not None and self.announcer is not None:  # else ignored (we did not ask for them)
                self.swarm.peer_has(self.peer_node_id, msg.hashes)
            return self._request_chunks(now), []
        if isinstance(msg, NoChunk):
            for h in msg.hashes:
                retry_s = CHUNK_RETRY_S if self.announcer is None else self.swarm.peer_lacks(
                    self.peer_node_id, h, CHUNK_RETRY_S)
                if self._asked.pop(h, None) is not None:
                    self.claims.release(h, self)
                    self._lacking[h] = now + retry_s
            return self._request_chunks(now), []
        raise ProtocolError("unexpected message")  # pragma: no cover - decode returns only the above

    def _verified(self, msg: Batch, events: list[Event]) -> SignedBatch | None:
        """The batch, checked; None (and a BatchForged event) when its signature is bad."""
        try:
            batch = decode_batch(msg.body, msg.sig)
        except ForgedBatchError as exc:
            self.store.note_forged_batch()
            log.warning("forged batch from peer %s dropped", self.peer_node_id)
            events.append(BatchForged(exc.reason))
            return None
        self._peer_holds(batch.origin, batch.first_seq, batch.last_seq)
        return batch

    def _apply_batches(self, batches: list[SignedBatch], now: float, out: list[Outgoing],
                       events: list[Event]) -> None:
        """Apply the batches gathered so far in one transaction; one Applied event per new batch."""
        if not batches:
            return
        report = self.store.apply(batches)
        batches.clear()
        events += [ChangeRejected(o, s, r.en) for o, s, r in report.rejections]
        tables = frozenset(report.tables_touched)
        for origin, first, last in report.applied:
            rejected = sum(1 for o, s, _ in report.rejections if o == origin and first <= s <= last)
            events.append(Applied(origin, first, last, last - first + 1 - rejected, rejected, tables))
        if "documents" in tables:
            out += self._request_chunks(now)

    def _on_chunk(self, msg: Chunk, now: float) -> tuple[list[Outgoing], list[Event]]:
        h = msg.sha256
        if h not in self._asked:
            return [], []  # not asked for (or given up on): ignore
        self._piece_at = now
        part = self._partial.pop(h, None) if msg.offset else bytearray()
        if part is None or len(part) != msg.offset:
            return [], []  # out of order: drop it; the request times out and is made again
        part += msg.data
        if len(part) < msg.total:
            self._partial[h] = part
            return [], []
        del self._asked[h]
        self.claims.release(h, self)
        self.chunks_in += 1
        result = self.store.put_chunk(h, bytes(part))
        if result == "corrupt":
            log.warning("corrupt chunk %s from %s refused", msg.sha256.hex()[:16], self.peer_node_id)
            return self._request_chunks(now), [ChunkRefused(msg.sha256)]
        events: list[Event] = []
        if result == "stored":
            events.append(ChunkStored(msg.sha256, self.store.pending_chunks()))
        return self._request_chunks(now), events

    # ------------------------------------------------------------------ helpers
    def _push(self) -> list[Outgoing]:
        assert self.peer_vector is not None
        out = []
        held = self.store.batches_after(self.peer_vector, limit=MAX_BATCHES_PER_PUSH)
        blocked: set[str] = set()
        for b in held:
            if b.first_seq in self._peer_ahead.get(b.origin, ()) or b.origin in blocked:
                continue
            if batch_format(b.body) not in self.peer_batch_versions:
                blocked.add(b.origin)
                self.withheld_batches += 1
                continue
            out.append(Batch(b.body, b.sig))
            self._peer_holds(b.origin, b.first_seq, b.last_seq)
        # more next round, unless all this round did was withhold (those would come back forever)
        self._more_to_push = len(held) >= MAX_BATCHES_PER_PUSH and (bool(out) or not blocked)
        return self._out(out)

    def _peer_holds(self, origin: str, first_seq: int, last_seq: int) -> None:
        """Note a batch the peer has (it sent it, or we did); keep the gap-free prefix exact."""
        if self.peer_vector is None:
            return
        ahead = self._peer_ahead.setdefault(origin, {})
        ahead[first_seq] = last_seq
        seq = self.peer_vector.get(origin, 0)
        while seq + 1 in ahead:
            seq = ahead.pop(seq + 1)
        for first in [f for f in ahead if f <= seq]:
            del ahead[first]
        self.peer_vector[origin] = seq

    def _may_owe(self, h: bytes) -> bool:
        if len(self._owed) >= MAX_OWED_CHUNKS or self.claims.owner(h) is self:
            return False
        return self.may_owe is None or self.may_owe(self.peer_node_id)

    def _serve_owed(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        for h in list(self._owed):
            data = self.store.get_chunk(h)
            if data is not None:
                self._owed.discard(h)
                out += self._send_chunk(h, data)
            elif not self.store.is_wanted(h):
                self._owed.discard(h)
                out += self._out([NoChunk((h,))], bulk=True)
        return out

    def _announce(self, now: float) -> list[Outgoing]:
        return [] if self.announcer is None else self._out(list(self.announcer.flush(now)))

    def _request_chunks(self, now: float) -> list[Outgoing]:
        room = CHUNK_WINDOW - len(self._asked)
        if room <= 0:
            return []
        if self.announcer is not None and self.swarm is not None:
            wanted = self.store.wanted_chunks(SWARM_SCAN_CHUNKS)
            picked = self.swarm.pick(self.peer_node_id, wanted, room, len(self._asked), self._free, now)
            ask = [h for h in picked if self.claims.take(h, self)]
            self.announcer.recheck(now, bool(wanted) and len(ask) < room)
        else:
            skip = len(self._asked) + len(self._lacking) + len(self.claims)
            ask = []
            for h in self.store.wanted_chunks(room + skip):
                if len(ask) >= room:
                    break
                if self._free(h) and (self.swarm is None or self.swarm.unclaimed_by_swarm(h)) \
                        and self.claims.take(h, self):
                    ask.append(h)
        if not ask:
            return []
        for h in ask:
            self._asked[h] = now
        return self._out([Want(tuple(ask))], bulk=True)

    def _free(self, h: bytes) -> bool:
        return h not in self._asked and h not in self._lacking and self.claims.owner(h) is None

    def _send_chunk(self, h: bytes, data: bytes) -> list[Outgoing]:
        self.chunks_out += 1
        return self._out(_pieces(h, data), bulk=True)

    def _out(self, msgs: list[Message], bulk: bool = False) -> list[Outgoing]:
        out = [Outgoing(encode(m), bulk) for m in msgs]
        self.bytes_out += sum(len(o.data) for o in out)
        return out
