"""Recording sync (sans-IO): a hall that missed a meeting fetches its recording from a tree neighbour.

Three messages on the media service (0x40), next to the media kinds (chunk.py) and floor kinds
(floor.py); each is the kind byte then a msgpack body (docs/protocol/media.md):

* 0x20 list:  `[[name, size, sha256 (32 B)], ...]`, this node's complete recordings
* 0x21 get:   `[name, offset, length]`, asks for bytes [offset, offset + length) of a listed file
* 0x22 piece: `[name, offset, data]`, the answer

`RecordingSync` keeps what each neighbour offers, fetches a recording this node lacks (or holds a
shorter copy of: a hall's copy of a meeting it relayed in part is no prefix of HQ's, so the whole
file is fetched) one piece at a time from one neighbour, appends it to a partial file (resumable
across restarts: the driver reports partial sizes), and asks the driver to verify the whole file
against the offered sha256 before it replaces the local copy. A piece the driver cannot write
(a full disk) is asked for again after WRITE_RETRY_S, from where the partial file ends. It answers gets with `Serve`
actions. The driver says which peers may carry recording bytes right now (`poll(now, ready)`:
short writer queue, no live media), so all of this is low priority.

This module never does I/O or reads a clock, and raises nothing but RecSyncError on hostile bytes.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

import msgpack

from meshmeet.errors import MeshmeetError

KIND_REC_LIST = 0x20
KIND_REC_GET = 0x21
KIND_REC_PIECE = 0x22
RECSYNC_KINDS = frozenset({KIND_REC_LIST, KIND_REC_GET, KIND_REC_PIECE})
PIECE_BYTES = 32 * 1024  # the largest get/piece; at 1 Mbit/s a piece holds the link for ~0.26 s
PIECE_START_BYTES = 4 * 1024  # a fetch's first get: pieces then grow or shrink to take PIECE_TARGET_S
PIECE_MIN_BYTES = 1024
PIECE_TARGET_S = 0.25  # how long one piece may hold a link (a 32 kbit/s hall link: ~1 KiB, not 8 s of 32 KiB)
MAX_LIST_ITEMS = 1000
MAX_MESSAGE_BYTES = PIECE_BYTES + 256
MAX_RECORDING_BYTES = 1 << 40
SHA256_BYTES = 32
REQUEST_TIMEOUT_S = 10.0  # a get unanswered this long is asked again (possibly of another neighbour)
WRITE_RETRY_S = 10.0  # a piece the driver could not write (disk full) is asked for again after this long
MAX_SERVE_QUEUE = 4  # gets a peer may have waiting here; more are dropped (it asks again)
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a meeting id: DIR/recordings/NAME.mmrec


class RecSyncError(MeshmeetError):
    """A recording-sync message could not be parsed."""

    def __init__(self, en: str) -> None:
        super().__init__("Gói tin đồng bộ bản ghi không hợp lệ", en)


@dataclass(frozen=True)
class RecordingInfo:
    name: str
    size: int
    sha256: bytes


@dataclass(frozen=True)
class RecList:
    items: tuple[RecordingInfo, ...]


@dataclass(frozen=True)
class RecGet:
    name: str
    offset: int
    length: int


@dataclass(frozen=True)
class RecPiece:
    name: str
    offset: int
    data: bytes


RecMessage = RecList | RecGet | RecPiece


# ---- actions for the driver ---------------------------------------------------------------
@dataclass(frozen=True)
class Send:
    peer: str
    body: bytes


@dataclass(frozen=True)
class Serve:
    """Read [offset, offset + length) of the local recording `name` and send it to `peer` (piece)."""

    peer: str
    name: str
    offset: int
    length: int


@dataclass(frozen=True)
class Write:
    """Append `data` to the partial file of `name`; it is `offset` bytes long now."""

    name: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class Verify:
    """The partial file of `name` is `size` bytes: check its sha256, then call verified()."""

    name: str
    size: int
    sha256: bytes


Action = Send | Serve | Write | Verify


# ---- wire ---------------------------------------------------------------------------------
def encode(msg: RecMessage) -> bytes:
    if isinstance(msg, RecList):
        return bytes((KIND_REC_LIST,)) + msgpack.packb([[i.name, i.size, i.sha256] for i in msg.items])
    if isinstance(msg, RecGet):
        return bytes((KIND_REC_GET,)) + msgpack.packb([msg.name, msg.offset, msg.length])
    return bytes((KIND_REC_PIECE,)) + msgpack.packb([msg.name, msg.offset, msg.data])


def _name(x: object) -> str:
    if not isinstance(x, str) or not NAME_RE.match(x):
        raise RecSyncError("bad recording name")
    return x


def _uint(x: object, limit: int, what: str) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x <= limit:
        raise RecSyncError(f"bad {what}")
    return x


def parse(body: bytes) -> RecMessage:
    if not body or body[0] not in RECSYNC_KINDS:
        raise RecSyncError("not a recording-sync message")
    if len(body) > MAX_MESSAGE_BYTES + (MAX_LIST_ITEMS * 120 if body[0] == KIND_REC_LIST else 0):
        raise RecSyncError("message too long")
    try:
        obj = msgpack.unpackb(body[1:], raw=False, strict_map_key=True, max_bin_len=PIECE_BYTES,
                              max_array_len=MAX_LIST_ITEMS, max_str_len=64, max_map_len=0, max_ext_len=0)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise RecSyncError(f"bad msgpack: {type(e).__name__}") from None
    if not isinstance(obj, list):
        raise RecSyncError("body must be an array")
    kind = body[0]
    if kind == KIND_REC_LIST:
        items = []
        for it in obj:
            if not isinstance(it, list) or len(it) != 3:
                raise RecSyncError("list item must be [name, size, sha256]")
            if not isinstance(it[2], bytes) or len(it[2]) != SHA256_BYTES:
                raise RecSyncError("bad sha256")
            items.append(RecordingInfo(_name(it[0]), _uint(it[1], MAX_RECORDING_BYTES, "size"), it[2]))
        if len({i.name for i in items}) != len(items):
            raise RecSyncError("name listed twice")
        return RecList(tuple(items))
    if len(obj) != 3:
        raise RecSyncError("get/piece must have 3 fields")
    name, offset = _name(obj[0]), _uint(obj[1], MAX_RECORDING_BYTES, "offset")
    if kind == KIND_REC_GET:
        length = _uint(obj[2], PIECE_BYTES, "length")
        if length == 0:
            raise RecSyncError("empty get")
        return RecGet(name, offset, length)
    if not isinstance(obj[2], bytes) or not obj[2]:
        raise RecSyncError("piece data must be non-empty bytes")
    return RecPiece(name, offset, obj[2])


# ---- the core -----------------------------------------------------------------------------
@dataclass
class _Fetch:
    peer: str
    target: RecordingInfo
    have: int  # bytes in the partial file
    asked_at: float | None = None  # a get for [have, ...) is outstanding since then
    resumed: bool = False  # its first bytes may be of another copy (an earlier partial file, or a copy
    #                        the source replaced meanwhile): a mismatch then means "start over", not "bad copy"
    written_from: int = 0  # where the last piece handed to the driver starts (undone if it cannot write it)
    write_failed: bool = False  # the driver could not write that piece: wait WRITE_RETRY_S, then ask again
    retry_at: float | None = None
    piece_bytes: int = PIECE_START_BYTES  # what the next get asks for (sized by how fast pieces came)


class RecordingSync:
    """See the module docstring. `partial`: name -> bytes already in partial files (from disk)."""

    def __init__(self, local: Collection[RecordingInfo] = (), partial: dict[str, int] | None = None) -> None:
        self.local: dict[str, RecordingInfo] = {i.name: i for i in local}
        self.partial: dict[str, int] = dict(partial or {})
        self.busy: frozenset[str] = frozenset()  # names not to fetch now (this node is recording them)
        self._offers: dict[str, dict[str, RecordingInfo]] = {}
        self._fetches: dict[str, _Fetch] = {}
        self._verifying: dict[str, _Fetch] = {}
        self._serving: dict[str, deque[RecGet]] = {}
        self._failed: set[tuple[str, bytes]] = set()  # (name, sha256) whose copy did not verify
        self.counters = {"pieces_in": 0, "pieces_out": 0, "bytes_in": 0, "fetched": 0, "verify_failed": 0,
                         "stale_pieces": 0, "gets_dropped": 0, "refused": 0}

    # ---- local files -------------------------------------------------------------------
    def set_local(self, items: Collection[RecordingInfo]) -> bool:
        """The driver rescanned the complete local recordings; True if the list changed."""
        new = {i.name: i for i in items}
        changed = new != self.local
        self.local = new
        return changed

    def list_message(self) -> bytes:
        return encode(RecList(tuple(self.local[n] for n in sorted(self.local))))

    # ---- links -------------------------------------------------------------------------
    def peer_up(self, peer: str) -> list[Action]:
        """A link came up: tell the peer what we have."""
        self._offers.setdefault(peer, {})
        return [Send(peer, self.list_message())]

    def peer_down(self, peer: str) -> None:
        self._offers.pop(peer, None)
        self._serving.pop(peer, None)
        for f in self._fetches.values():
            if f.peer == peer:
                f.asked_at = None

    def peers(self) -> list[str]:
        return list(self._offers)

    # ---- input -------------------------------------------------------------------------
    def receive(self, peer: str, body: bytes, now: float | None = None) -> list[Action]:
        """A message from a linked peer. RecSyncError if malformed. With `now`, a piece's round
        trip sizes the next get so that a piece holds the link about PIECE_TARGET_S."""
        msg = parse(body)
        if peer not in self._offers:
            return []  # its link is not up (a message that overtook the link-up hook)
        if isinstance(msg, RecList):
            self._offers[peer] = {i.name: i for i in msg.items}
            return []
        if isinstance(msg, RecGet):
            have = self.local.get(msg.name)
            if have is None or msg.offset + msg.length > have.size:
                self.counters["refused"] += 1
                return []
            q = self._serving.setdefault(peer, deque())
            if len(q) >= MAX_SERVE_QUEUE:
                self.counters["gets_dropped"] += 1
                return []
            q.append(msg)
            return []
        f = self._fetches.get(msg.name)
        if f is None or f.peer != peer or f.asked_at is None or msg.offset != f.have \
                or msg.offset + len(msg.data) > f.target.size:
            self.counters["stale_pieces"] += 1
            return []
        if now is not None and msg.data:
            elapsed_s = max(now - f.asked_at, 1e-3)
            grown = int(len(msg.data) * PIECE_TARGET_S / elapsed_s)
            f.piece_bytes = max(PIECE_MIN_BYTES, min(grown, 2 * f.piece_bytes, PIECE_BYTES))
        f.written_from = msg.offset
        f.have += len(msg.data)
        f.asked_at = None
        self.partial[msg.name] = f.have
        self.counters["pieces_in"] += 1
        self.counters["bytes_in"] += len(msg.data)
        return [Write(msg.name, msg.offset, msg.data)]  # the next poll verifies a whole file

    def verified(self, name: str, ok: bool) -> list[Action]:
        """The driver checked the partial file (and, if ok, made it the local copy): if ok, the
        new list for every peer (so that a recording spreads hop by hop)."""
        f = self._verifying.pop(name, None)
        self.partial.pop(name, None)
        if f is None:
            return []
        if ok:
            self.local[name] = f.target
            self.counters["fetched"] += 1
            body = self.list_message()
            return [Send(p, body) for p in sorted(self._offers)]
        else:
            if not f.resumed:  # a fresh copy that does not match: do not fetch that one again
                self._failed.add((name, f.target.sha256))
            self.counters["verify_failed"] += 1
        return []

    def abandon(self, name: str) -> None:
        """The driver could not write the last piece of `name` (e.g. the disk is full; it left the
        partial file as it was): ask for that piece again after WRITE_RETRY_S."""
        f = self._fetches.get(name)
        if f is None:
            self.partial.pop(name, None)
            return
        f.have = f.written_from
        f.asked_at = None
        f.write_failed = True
        self.partial[name] = f.have

    # ---- timers ------------------------------------------------------------------------
    def _wanted(self, info: RecordingInfo) -> bool:
        mine = self.local.get(info.name)
        return ((mine is None or mine.size < info.size) and info.name not in self.busy
                and info.name not in self._verifying and (info.name, info.sha256) not in self._failed)

    def poll(self, now: float, ready: Collection[str]) -> list[Action]:
        """Serve and ask, but only on links in `ready` (short writer queue, no live media)."""
        out: list[Action] = []
        for peer in ready:
            q = self._serving.get(peer)
            if q:
                g = q.popleft()
                out.append(Serve(peer, g.name, g.offset, g.length))
                self.counters["pieces_out"] += 1
        for name in list(self._fetches):
            f = self._fetches[name]
            offer = self._offers.get(f.peer, {}).get(name)
            if name in self.busy or offer is None or offer.size < f.target.size:
                del self._fetches[name]  # gone, or being recorded here now: pick again below
            elif offer != f.target:  # the file grew there (append-only: keep what we have), or a hall's
                f.target = offer      # copy was replaced by a longer one it fetched (not a prefix of it)
                f.resumed = f.resumed or f.have > 0
        sources = sorted(p for p in ready if p in self._offers)
        for peer in sources:
            for name, info in sorted(self._offers[peer].items()):
                if name not in self._fetches and self._wanted(info):
                    best = max((self._offers[p][name] for p in sources
                                if name in self._offers[p] and self._wanted(self._offers[p][name])), key=lambda i: i.size)
                    src = next(p for p in sources if self._offers[p].get(name) == best)
                    have = min(self.partial.get(name, 0), best.size)
                    self._fetches[name] = _Fetch(src, best, have, resumed=have > 0, written_from=have)
        for name, f in sorted(self._fetches.items()):
            if f.write_failed:
                f.write_failed, f.retry_at = False, now + WRITE_RETRY_S
            if f.retry_at is not None:
                if now < f.retry_at:
                    continue
                f.retry_at = None
            due = f.asked_at is None or now - f.asked_at >= REQUEST_TIMEOUT_S
            if due and f.peer in ready and f.have < f.target.size:
                f.asked_at = now
                out.append(Send(f.peer, encode(RecGet(name, f.have, min(f.piece_bytes, f.target.size - f.have)))))
            elif f.have >= f.target.size and name not in self._verifying:
                del self._fetches[name]  # a partial file as long as the target already: verify it
                self._verifying[name] = f
                out.append(Verify(name, f.target.size, f.target.sha256))
        return out

    def wake_at(self, now: float) -> float | None:
        """When a get times out (None: nothing outstanding)."""
        times = [f.asked_at + REQUEST_TIMEOUT_S for f in self._fetches.values() if f.asked_at is not None]
        times += [f.retry_at for f in self._fetches.values() if f.retry_at is not None]
        return min(times, default=None)

    def idle(self) -> bool:
        """Nothing to serve, fetch, verify or want: only a message, a link or a rescan brings work."""
        return (not self._fetches and not self._verifying and not any(self._serving.values())
                and not self.wanted())

    def wanted(self) -> list[str]:
        """Names a linked neighbour lists that this node would fetch (missing or shorter here),
        whether or not a link is ready for it now."""
        return sorted({n for offers in self._offers.values() for n, i in offers.items() if self._wanted(i)})

    def status(self) -> dict:
        return {"local": len(self.local),
                "wanted": self.wanted(),
                "fetching": [{"name": n, "peer": f.peer, "have": f.have, "size": f.target.size}
                             for n, f in sorted(self._fetches.items())],
                "verifying": sorted(self._verifying),
                "counters": dict(self.counters)}
