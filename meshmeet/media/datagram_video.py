"""Video over media datagrams (sans-IO): pieces joined in frame order, lost pieces asked for again (NACK).

The sender cuts each video chunk into even pieces (datagram type 0x03) numbered by a per-layer
frame counter and keeps what it sent for NACK_CACHE_S; a NACK (type 0x07) names pieces to send
again. The receiver delivers each layer's frames in order; when the next frame is incomplete
and something later has arrived (or its pieces stopped coming for FRAME_SPREAD_S) it asks for the
missing pieces, again after a retry interval, and gives the frame up NACK_BUDGET_S after the gap
was seen: its layer then waits for a keyframe (later deltas are dropped) and KeyframeWanted asks
the driver to request one upstream. Video may thus arrive up to NACK_BUDGET_S late; audio never
waits for it (its own datagrams, its own queue in the player).

This module must never do I/O, read a clock, or raise anything but DatagramError for bytes.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from . import chunk as C
from . import datagram as D
from .datagram_bodies import MAX_PIECES, VideoPiece

NACK_CACHE_S = 1.0  # the sender keeps sent pieces this long
NACK_CACHE_FRAMES = 64  # per layer, at most
RESEND_MAX = 3  # times one piece is sent again, at most
NACK_BUDGET_S = 0.3  # a frame not repaired this long after its gap was seen is lost
NACK_RETRY_MIN_S = 0.05  # ask again after max(this, 1.5 RTT) if the piece still has not come
FRAME_SPREAD_S = 0.05  # the pieces of one frame leave back to back: incomplete this long = a gap
MAX_PENDING_FRAMES = 32  # frames waiting behind a gap, per layer; more: the gap is given up
_U16 = 0x10000
_NACK_ENTRY = struct.Struct(">BHB")


@dataclass(frozen=True)
class Deliver:
    """A media message from the peer, to be handled as if it came over the link."""

    message: bytes


@dataclass(frozen=True)
class KeyframeWanted:
    layer: int


@dataclass(frozen=True)
class Nack:
    """Send again these pieces of (layer, frame); no indices: every piece of it."""

    layer: int
    frame: int
    indices: tuple[int, ...] = ()


def encode_nacks(nacks: list[Nack]) -> bytes:
    out = bytearray()
    for n in nacks:
        out += _NACK_ENTRY.pack(n.layer, n.frame, len(n.indices)) + bytes(n.indices)
    return bytes(out)


def decode_nacks(body: bytes) -> list[Nack]:
    out, pos = [], 0
    if not body:
        raise D.DatagramError("malformed", "empty nack")
    while pos < len(body):
        if len(body) < pos + _NACK_ENTRY.size:
            raise D.DatagramError("malformed", "short nack entry")
        layer, frame, n = _NACK_ENTRY.unpack_from(body, pos)
        pos += _NACK_ENTRY.size
        if layer not in (C.LAYER_HIGH, C.LAYER_LOW) or len(body) < pos + n:
            raise D.DatagramError("malformed", "nack entry")
        out.append(Nack(layer, frame, tuple(body[pos:pos + n])))
        pos += n
    return out


def split_nacks(nacks: list[Nack], limit: int = D.MAX_BODY_BYTES) -> list[list[Nack]]:
    """Group entries into bodies of at most `limit` bytes."""
    groups: list[list[Nack]] = [[]]
    size = 0
    for n in nacks:
        n_size = _NACK_ENTRY.size + len(n.indices)
        if groups[-1] and size + n_size > limit:
            groups.append([])
            size = 0
        groups[-1].append(n)
        size += n_size
    return [g for g in groups if g]


def _ahead(a: int, b: int) -> int:
    """How far u16 frame number `a` is after `b` (negative: before)."""
    d = (a - b) % _U16
    return d - _U16 if d >= _U16 // 2 else d


class VideoSender:
    """Cuts video chunks into pieces and keeps them for NACKs."""

    def __init__(self, piece_bytes: int) -> None:
        self.piece_bytes = piece_bytes
        self._frame = {C.LAYER_HIGH: 0, C.LAYER_LOW: 0}
        self._sent: dict[int, OrderedDict[int, tuple[float, list[bytes], list[int]]]] = {
            C.LAYER_HIGH: OrderedDict(), C.LAYER_LOW: OrderedDict()}

    def pieces(self, data: bytes, layer: int, now: float) -> list[VideoPiece] | None:
        """The pieces for one video chunk (None: more than MAX_PIECES, the link must carry it)."""
        count = -(-len(data) // self.piece_bytes)
        if count > MAX_PIECES:
            return None
        size = -(-len(data) // count)
        frame = self._frame[layer]
        self._frame[layer] = (frame + 1) % _U16
        out = [VideoPiece(layer, frame, i, count, data[i * size:(i + 1) * size]) for i in range(count)]
        cache = self._sent[layer]
        cache[frame] = (now, [p.piece for p in out], [0] * count)
        while len(cache) > NACK_CACHE_FRAMES or (cache and now - next(iter(cache.values()))[0] > NACK_CACHE_S):
            cache.popitem(last=False)
        return out

    def resend(self, nack: Nack, now: float) -> list[VideoPiece]:
        """The pieces a NACK asks for that are still kept (unknown ones are ignored), each at most
        RESEND_MAX times: NACKs cannot make a link carry a frame over and over."""
        kept = self._sent[nack.layer].get(nack.frame)
        if kept is None or now - kept[0] > NACK_CACHE_S:
            return []
        pieces, resent = kept[1], kept[2]
        out = []
        for i in sorted(set(nack.indices or range(len(pieces)))):
            if i < len(pieces) and resent[i] < RESEND_MAX:
                resent[i] += 1
                out.append(VideoPiece(nack.layer, nack.frame, i, len(pieces), pieces[i]))
        return out


@dataclass
class _Frame:
    count: int
    first_at: float
    pieces: dict[int, bytes] = field(default_factory=dict)
    nacked_at: float | None = None
    nacks: int = 0


@dataclass
class _Layer:
    next_frame: int | None = 0  # the sender numbers a channel's frames from 0: a lost first frame is a gap too
    frames: dict[int, _Frame] = field(default_factory=dict)  # frame number -> pieces so far (at or after next_frame)
    gap_at: float | None = None  # when the head frame was first seen blocked
    need_key: bool = False


class VideoReceiver:
    """Joins pieces into chunks, per layer, in frame order; see the module docstring."""

    def __init__(self) -> None:
        self._layers = {C.LAYER_HIGH: _Layer(), C.LAYER_LOW: _Layer()}
        self.rtt_s: float | None = None
        self.counters = {"video_frames_lost": 0, "video_dropped_for_key": 0, "late_pieces": 0,
                         "nacked_pieces": 0, "video_repaired": 0, "malformed_frames": 0}

    def piece(self, p: VideoPiece, now: float) -> list[Deliver | KeyframeWanted | Nack]:
        st = self._layers[p.layer]
        if st.next_frame is None:
            st.next_frame = p.frame
        d = _ahead(p.frame, st.next_frame)
        if d < 0:
            self.counters["late_pieces"] += 1
            return []
        out: list = []
        if d >= MAX_PENDING_FRAMES:  # far ahead: everything before it is given up
            out += self._lose(p.layer, st)
            st.frames.clear()
            st.next_frame, st.gap_at = p.frame, None
        f = st.frames.get(p.frame)
        if f is None:
            f = st.frames[p.frame] = _Frame(p.count, now)
        elif f.count == 0:  # a frame we asked for whole: now we know its size
            f.count, f.first_at = p.count, now
        if p.count != f.count:
            raise D.DatagramError("malformed", "piece count changed within a frame")
        if p.index in f.pieces:
            return out
        if f.nacks:
            self.counters["video_repaired"] += 1
        f.pieces[p.index] = p.piece
        return out + self._advance(p.layer, st, now)

    def _advance(self, layer: int, st: _Layer, now: float) -> list:
        out: list = []
        while True:
            assert st.next_frame is not None
            head = st.frames.get(st.next_frame)
            if head is not None and head.count and len(head.pieces) == head.count:
                del st.frames[st.next_frame]
                st.next_frame = (st.next_frame + 1) % _U16
                st.gap_at = None
                out += self._deliver(layer, st, b"".join(head.pieces[i] for i in range(head.count)))
                continue
            if not self._blocked(st, head, now):
                return out
            if st.gap_at is None:
                st.gap_at = now
            if now - st.gap_at >= NACK_BUDGET_S:  # give the head frame up
                st.frames.pop(st.next_frame, None)
                st.next_frame = (st.next_frame + 1) % _U16
                st.gap_at = None
                out += self._lose(layer, st)
                if not st.frames:
                    return out
                continue
            return out + self._nacks(layer, st, now)

    def _blocked(self, st: _Layer, head: _Frame | None, now: float) -> bool:
        """The head frame is incomplete and will not complete on its own."""
        if any(f != st.next_frame for f in st.frames):
            return True  # a later frame has started
        return head is not None and now - head.first_at >= FRAME_SPREAD_S

    def _nacks(self, layer: int, st: _Layer, now: float) -> list[Nack]:
        retry = max(NACK_RETRY_MIN_S, 1.5 * (self.rtt_s or 0.0))
        assert st.next_frame is not None
        newest = max(_ahead(f, st.next_frame) for f in st.frames) if st.frames else 0
        out = []
        for k in range(newest + 1):
            n = (st.next_frame + k) % _U16
            f = st.frames.get(n)
            if f is None:
                f = st.frames[n] = _Frame(0, now)  # a whole frame missing: count unknown yet
            if f.nacked_at is not None and now - f.nacked_at < retry:
                continue
            if f.count and len(f.pieces) == f.count:
                continue
            missing = tuple(i for i in range(f.count) if i not in f.pieces) if f.count else ()
            if f.count and k == newest and newest > 0:
                top = max(f.pieces)  # the newest frame's tail may still be on its way
                missing = tuple(i for i in missing if i < top)
                if not missing:
                    f.nacked_at = now  # looked at: next look after the retry interval
                    continue
            f.nacked_at, f.nacks = now, f.nacks + 1
            self.counters["nacked_pieces"] += len(missing) or 1
            out.append(Nack(layer, n, missing))
        return out

    def _deliver(self, layer: int, st: _Layer, whole: bytes) -> list:
        try:
            info = C.peek_chunk(whole)
        except C.MediaFormatError:
            info = None
        if info is None or info.track != C.TRACK_VIDEO or info.layer != layer:
            self.counters["malformed_frames"] += 1  # (an authentic peer's bug) counted, taken as lost
            return self._lose(layer, st)
        if st.need_key and not info.keyframe:
            self.counters["video_dropped_for_key"] += 1
            return []
        st.need_key = False
        return [Deliver(whole)]

    def _lose(self, layer: int, st: _Layer) -> list:
        self.counters["video_frames_lost"] += 1
        st.need_key = True
        return [KeyframeWanted(layer)]

    def next_deadline(self) -> float | None:
        t = None
        retry = max(NACK_RETRY_MIN_S, 1.5 * (self.rtt_s or 0.0))
        for st in self._layers.values():
            if not st.frames or st.next_frame is None:
                continue
            if st.gap_at is None:
                head = st.frames.get(st.next_frame)
                if head is None or not head.count:
                    continue
                c = head.first_at + FRAME_SPREAD_S  # blocked then, unless it completes
            else:
                c = st.gap_at + NACK_BUDGET_S
                for f in st.frames.values():
                    if f.nacked_at is not None and not (f.count and len(f.pieces) == f.count):
                        c = min(c, f.nacked_at + retry)
            t = c if t is None else min(t, c)
        return t

    def tick(self, now: float) -> list:
        out: list = []
        for layer, st in self._layers.items():
            if st.frames and st.next_frame is not None:
                out += self._advance(layer, st, now)
        return out
