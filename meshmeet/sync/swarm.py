"""The chunk swarm, sans-IO: who around this node holds which chunk, and whom to ask for it.

With feature "swarm/1" (told in capabilities, docs/protocol.md "Compatibility") each side of a
sync link announces the chunks it holds in HAVE messages: its newest inventory when the peer's
feature becomes known, then, batched and at most every HAVE_MIN_INTERVAL_S, every chunk stored
since (received or imported: the store's chunk rowids tell) - `Announcer`, one per session.
`Swarm` (one per node, shared by its sessions like ChunkClaims) keeps what each peer announced,
and `pick` chooses which wanted chunks one session asks of its peer: only chunks that peer
announced; of *traders* (peers that are not a source) first, rarest first, each chunk of one
holder (spare requests, then rendezvous hashing); of a *source* (HQ, as the driver says) only
chunks no trader holds, and only while no trader holds anything we want, SOURCE_WINDOW at a
time. At a source, `serve` refuses once a chunk it already sent into the mesh ("fetch it
there"), and serves a second ask; a peer that asks again having never got a chunk elsewhere is
isolated and served at once. A refused chunk is asked again only once the mesh has had nothing
for us for MESH_PATIENCE_S. Together HQ sends each chunk about once per part of the map that
has no other way to it (docs/protocol/sync.md "Swarm"). This module must never do I/O, read a
clock, or make a HAVE for a peer that has not announced the feature (the session only makes an
Announcer once the driver says so).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Sequence

from .messages import MAX_WANT_HASHES, Have

FEATURE = "swarm/1"
HAVE_MIN_INTERVAL_S = 0.2        # at most one HAVE of new chunks per peer per this
MAX_INVENTORY_HASHES = 8192      # newest held chunks announced when the feature comes up (256 KiB)
MAX_HELD_PER_PEER = 8192         # announced chunks remembered per peer, the newest (2 GiB of chunks)
MAX_SENT_TRACKED = 8192          # (a source) chunks whose recipients it remembers
SOURCE_WINDOW = 2                # requests in flight to a source peer while others can trade
UNANNOUNCED_WAIT_S = 60.0        # then a chunk nobody announced is asked of any swarm peer
MAX_UNANNOUNCED_TRACKED = 8192   # chunk names remembered as unannounced / refused
SWARM_SCAN_CHUNKS = 2048         # wanted chunks a swarm session looks over to pick the rarest
YOUNG_S = 10.0                   # (a source) a peer first served less than this ago counts as meshed
MESH_PATIENCE_S = 15.0           # a chunk a source refused is asked again once the mesh had nothing for us this long
RECHECK_S = 1.0                  # a session that wants chunks it could not ask for looks again


class Swarm:
    """What each swarm peer of this node announced holding (shared by the node's sessions)."""

    def __init__(self, node_id: str, sources: Callable[[str], bool] | None = None,
                 i_am_source: Callable[[], bool] | None = None) -> None:
        """`sources(peer)`: is that peer a source (HQ)? `i_am_source()`: is this node one (asked anew
        each time: the roster may change)?"""
        self.node_id = node_id
        self.is_source = sources or (lambda peer: False)
        self._i_am_source = i_am_source or (lambda: False)
        self._sent: dict[bytes, set[str]] = {}     # (a source) chunk -> swarm peers it was sent to
        self._meshed: set[str] = set()             # (a source) peers that got a chunk elsewhere
        self._isolated: set[str] = set()           # (a source) peers that seem to have no other
        self._refused: set[tuple[str, bytes]] = set()
        self._first_sent: dict[str, float] = {}     # (a source) when it first served each peer
        self._start = int.from_bytes(hashlib.blake2b(node_id.encode(), digest_size=8).digest(), "big")
        self._held: dict[str, dict[bytes, None]] = {}  # per peer, announced names, oldest first
        self._holders: dict[bytes, set[str]] = {}
        self._unannounced_since: dict[bytes, float] = {}
        self._slow: set[tuple[str, bytes]] = set()  # requests that timed out once at a peer still sending
        self._from_mesh: set[bytes] = set()        # chunks a source told us to fetch from the mesh
        self._news_at = float("-inf")              # when a trader last held a chunk we wanted
        self._spare: dict[str, int] = {}           # per peer, requests its session could still make

    # ----- what peers said ---------------------------------------------------------------------
    def peer_has(self, peer: str, hashes: Iterable[bytes]) -> None:
        held = self._held.setdefault(peer, {})
        source = self._i_am_source()
        for h in hashes:
            if source and peer not in self._sent.get(h, ()):
                self._meshed.add(peer)
            if h in held:
                continue
            if len(held) >= MAX_HELD_PER_PEER:  # forget its oldest announcement
                self._forget(peer, next(iter(held)))
            held[h] = None
            self._holders.setdefault(h, set()).add(peer)
            self._unannounced_since.pop(h, None)

    def peer_lacks(self, peer: str, h: bytes, retry_s: float) -> float:
        """The peer answered NO_CHUNK: after how long to ask it again. A trader that announced the
        chunk dropped it (forget that); a source means "from the mesh, please" (see `serve`): with no
        trader around we ask it again at once, else (`pick`) once the mesh has had nothing we want
        for MESH_PATIENCE_S (while it has, the chunk is on its way through it)."""
        if not self.is_source(peer):
            self._forget(peer, h)
            return retry_s
        if not any(not self.is_source(q) for q in self._held):
            return 0.0
        if len(self._from_mesh) >= MAX_UNANNOUNCED_TRACKED:
            self._from_mesh.clear()
        self._from_mesh.add(h)
        return retry_s

    def timed_out(self, peer: str, h: bytes, sending: bool) -> None:
        """A request for `h` to `peer` was not answered in time. A trader still sending us pieces is
        only slow (its queue is long): its announcement stands once; else it is forgotten."""
        if sending and (peer, h) not in self._slow:
            if len(self._slow) >= MAX_UNANNOUNCED_TRACKED:
                self._slow.clear()
            self._slow.add((peer, h))
            return
        self._slow.discard((peer, h))
        self.peer_lacks(peer, h, 0.0)

    def serve(self, peer: str, h: bytes, now: float) -> bool:
        """May this node send chunk `h` (which it holds) to swarm peer `peer` now? Always, but at a
        source a chunk already sent to another peer not known to be isolated is refused once
        ("fetch it from the mesh"); asked again, it is served, and a peer that asks again without
        ever having announced a chunk from elsewhere is taken to be isolated (served at once)."""
        if not self._i_am_source():
            return True
        if (peer, h) in self._refused:
            self._refused.discard((peer, h))
            if peer not in self._meshed:
                self._isolated.add(peer)
        elif peer not in self._isolated and any(self._in_mesh(q, now) for q in self._sent.get(h, ()) if q != peer):
            if len(self._refused) >= MAX_UNANNOUNCED_TRACKED:
                self._refused.clear()
            self._refused.add((peer, h))
            return False
        self._first_sent.setdefault(peer, now)
        if h not in self._sent and len(self._sent) >= MAX_SENT_TRACKED:
            del self._sent[next(iter(self._sent))]
        self._sent.setdefault(h, set()).add(peer)
        return True

    def _in_mesh(self, peer: str, now: float) -> bool:
        """Is a chunk sent to `peer` in the mesh? Yes if it got a chunk elsewhere, or if it is new
        (first served less than YOUNG_S ago: it has not had time to show it); a peer that has not
        shown it since is probably cut off from the others (isolated or not yet known to be)."""
        if peer in self._meshed:
            return True
        return peer not in self._isolated and now - self._first_sent.get(peer, now) < YOUNG_S

    def _forget(self, peer: str, h: bytes) -> None:
        held = self._held.get(peer)
        if held is not None and h in held:
            del held[h]
            self._holders[h].discard(peer)
            if not self._holders[h]:
                del self._holders[h]

    def peer_gone(self, peer: str) -> None:
        self._meshed.discard(peer)
        self._isolated.discard(peer)
        self._first_sent.pop(peer, None)
        self._spare.pop(peer, None)
        for h in list(self._held.get(peer, ())):
            self._forget(peer, h)
        self._held.pop(peer, None)

    def holders(self, h: bytes) -> set[str]:
        return self._holders.get(h, set())

    def _placed(self, peer: str, h: bytes) -> tuple[bool, bytes]:
        """Lower is better: a holder with spare requests, then a hash of (peer, chunk) that spreads
        the chunks among holders the same way at every look (rendezvous hashing)."""
        return self._spare.get(peer, 1) <= 0, hashlib.blake2b(peer.encode() + h, digest_size=8).digest()

    # ----- whom to ask -------------------------------------------------------------------------
    def pick(self, peer: str, wanted: Sequence[bytes], room: int, in_flight: int,
             free: Callable[[bytes], bool], now: float) -> list[bytes]:
        """Up to `room` chunks of `wanted` for `peer`'s session to ask for now (`free`: not asked
        or claimed anywhere and not refused by this peer; `in_flight`: its requests outstanding)."""
        held = self._held.get(peer, {})
        self._spare[peer] = room
        traders = [q for q in self._held if not self.is_source(q)]
        from_trader: list[tuple[int, bytes, bytes]] = []
        from_source: list[tuple[bytes, bytes]] = []
        late: list[tuple[bytes, bytes]] = []
        mesh_busy = False  # some wanted chunk is held by a trader: sources wait
        for h in wanted:
            holders = self._holders.get(h, ())
            trading = [q for q in holders if not self.is_source(q)]
            mesh_busy = mesh_busy or bool(trading)
            if not free(h):
                continue
            if h not in held:
                if not holders and self._waited(h, now):
                    late.append((self._order(h), h))
            elif self.is_source(peer):
                if not trading and (h not in self._from_mesh or now - self._news_at >= MESH_PATIENCE_S):
                    from_source.append((self._order(h), h))  # (a refused one once the mesh goes quiet)
            elif min(trading, key=lambda q: self._placed(q, h)) == peer:  # the best placed holder
                from_trader.append((len(holders), self._order(h), h))
        if mesh_busy:
            self._news_at = now  # the mesh around us has had something for us
        if self.is_source(peer) and traders:
            room = min(room, SOURCE_WINDOW - in_flight) if not mesh_busy else 0
        from_trader.sort()
        from_source.sort()
        late.sort()
        picked = ([h for _, _, h in from_trader] + [h for _, h in from_source] + [h for _, h in late])[:max(room, 0)]
        self._spare[peer] = room - len(picked)
        return picked

    def unclaimed_by_swarm(self, h: bytes) -> bool:
        """For a session without the feature: leave a chunk a swarm peer announced to its session."""
        return h not in self._holders

    def _order(self, h: bytes) -> bytes:
        """Where `h` lies on a ring starting at this node's place: neighbours begin apart."""
        return ((int.from_bytes(h[:8], "big") - self._start) % (1 << 64)).to_bytes(8, "big")

    def _waited(self, h: bytes, now: float) -> bool:
        since = self._unannounced_since.get(h)
        if since is None:
            if len(self._unannounced_since) >= MAX_UNANNOUNCED_TRACKED:
                self._unannounced_since.clear()
            self._unannounced_since[h] = now
            return False
        return now - since >= UNANNOUNCED_WAIT_S


class Announcer:
    """What one session has told its (swarm) peer it holds; `store` is the node's Store."""

    def __init__(self, store: "ChunkSource", now: float) -> None:
        self.store = store
        self._sent_at = float("-inf")
        self._recheck_at: float | None = None
        self._watermark, newest = store.newest_chunks(MAX_INVENTORY_HASHES)
        self.inventory: list[Have] = _haves(newest)

    def recheck(self, now: float, wanting: bool) -> None:
        """Chunks are wanted that could not be asked of this peer now: look again in RECHECK_S
        (holders change; another session's better-placed peer may have gone quiet)."""
        self._recheck_at = now + RECHECK_S if wanting else None

    def deadline(self) -> float | None:
        """When `flush` should run: something new to announce, or a recheck (None: neither)."""
        times = [self._recheck_at] if self._recheck_at is not None else []
        if self.store.chunks_since(self._watermark, 1):
            times.append(self._sent_at + HAVE_MIN_INTERVAL_S)
        return min(times) if times else None

    def flush(self, now: float) -> list[Have]:
        """HAVEs of chunks stored since the last one, unless one left less than the interval ago."""
        if self._recheck_at is not None and self._recheck_at <= now:
            self._recheck_at = None  # the caller asks for chunks next
        if now < self._sent_at + HAVE_MIN_INTERVAL_S:
            return []
        rows = self.store.chunks_since(self._watermark, MAX_INVENTORY_HASHES)
        if not rows:
            return []
        self._watermark = rows[-1][0]
        self._sent_at = now
        return _haves([h for _, h in rows])


def _haves(hashes: list[bytes]) -> list[Have]:
    return [Have(tuple(hashes[i:i + MAX_WANT_HASHES])) for i in range(0, len(hashes), MAX_WANT_HASHES)]


class ChunkSource:  # the part of Store an Announcer reads (store/chunkstore.py)
    def newest_chunks(self, limit: int) -> tuple[int, list[bytes]]: ...  # pragma: no cover
    def chunks_since(self, rowid: int, limit: int) -> list[tuple[int, bytes]]: ...  # pragma: no cover
