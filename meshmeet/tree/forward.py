"""Broadcast along the tree: every node gets each message once, from any source (sans-IO).

A spanning tree is a broadcast tree for every source: forward to all tree neighbours except the
one the message came from. Each frame carries (source, seq); a per-source sliding window drops
duplicates and frames older than the window. What was in flight when the tree changed may arrive
late or not at all: live media tolerates that, state is repaired by sync. This module must never
decide the tree (it is given the neighbours) and never retransmit.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from ..errors import MeshmeetError
from .messages import MAX_NODE_ID_CHARS

KIND_BROADCAST = 3
DEDUPE_WINDOW = 1024          # sequence numbers remembered per source
MAX_SEQ = (1 << 63) - 1
MAX_PAYLOAD_BYTES = 64 * 1024
_FRAME_OVERHEAD_BYTES = 96


class BroadcastFrameError(MeshmeetError):
    """A broadcast frame that is not well formed."""

    def __init__(self, en: str) -> None:
        super().__init__(f"Khung quảng bá không hợp lệ: {en}", f"Invalid broadcast frame: {en}")


@dataclass(frozen=True)
class Broadcast:
    """One broadcast message: who started it, its per-source number, and the payload."""

    source: str
    seq: int
    payload: bytes


def encode_broadcast(frame: Broadcast) -> bytes:
    if not 0 < len(frame.source) <= MAX_NODE_ID_CHARS or not 0 <= frame.seq <= MAX_SEQ or len(frame.payload) > MAX_PAYLOAD_BYTES:
        raise BroadcastFrameError("field out of range")
    return msgpack.packb([KIND_BROADCAST, frame.source, frame.seq, frame.payload], use_bin_type=True)


def decode_broadcast(data: bytes) -> Broadcast:
    """Parse a broadcast frame; raise BroadcastFrameError on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > MAX_PAYLOAD_BYTES + _FRAME_OVERHEAD_BYTES:
        raise BroadcastFrameError("bad length")
    try:
        body = msgpack.unpackb(bytes(data), raw=False, max_array_len=4, max_map_len=0, max_ext_len=0,
                               max_str_len=MAX_NODE_ID_CHARS * 4, max_bin_len=MAX_PAYLOAD_BYTES)
    except Exception as exc:  # msgpack raises several unrelated types on hostile input
        raise BroadcastFrameError("not msgpack") from exc
    if type(body) is not list or len(body) != 4 or body[0] != KIND_BROADCAST or type(body[0]) is not int:
        raise BroadcastFrameError("bad header")
    _, source, seq, payload = body
    if type(source) is not str or not 0 < len(source) <= MAX_NODE_ID_CHARS or not source.isprintable():
        raise BroadcastFrameError("bad source")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise BroadcastFrameError("bad seq")
    if type(payload) is not bytes:
        raise BroadcastFrameError("bad payload")
    return Broadcast(source, seq, payload)


class DedupeWindow:
    """Seen sequence numbers of one source: the highest, plus a bitmap of the DEDUPE_WINDOW below it."""

    def __init__(self, size: int = DEDUPE_WINDOW) -> None:
        self._size = size
        self._top = -1
        self._bits = 0

    def check_and_add(self, seq: int) -> bool:
        """True if `seq` is new (and remember it); False for a duplicate or a frame older than the window."""
        if seq > self._top:
            shift = seq - self._top
            self._bits = ((self._bits << shift) | 1) & ((1 << self._size) - 1) if shift < self._size else 1
            self._top = seq
            return True
        offset = self._top - seq
        if offset >= self._size or self._bits >> offset & 1:
            return False
        self._bits |= 1 << offset
        return True


@dataclass(frozen=True)
class Forwarded:
    """Result of a received frame: the message to deliver locally (None if duplicate/bad) and the sends."""

    delivered: Broadcast | None
    sends: tuple[tuple[str, bytes], ...]
    error: str | None = None


class Forwarder:
    """Per-node broadcast relay state: own sequence counter and the dedupe windows."""

    def __init__(self, node_id: str) -> None:
        self._id = node_id
        self._next_seq = 0
        self._windows: dict[str, DedupeWindow] = {}

    def originate(self, payload: bytes, tree_neighbours: tuple[str, ...]) -> tuple[Broadcast, tuple[tuple[str, bytes], ...]]:
        """Start a broadcast from this node: the frame and the copies to send."""
        frame = Broadcast(self._id, self._next_seq, payload)
        self._next_seq += 1
        self._windows.setdefault(self._id, DedupeWindow()).check_and_add(frame.seq)
        data = encode_broadcast(frame)
        return frame, tuple((peer, data) for peer in tree_neighbours)

    def receive(self, peer: str, data: bytes, tree_neighbours: tuple[str, ...]) -> Forwarded:
        """A frame from `peer`: deliver it if new and forward to every tree neighbour but `peer`."""
        try:
            frame = decode_broadcast(data)
        except BroadcastFrameError as exc:
            return Forwarded(None, (), exc.en)
        if frame.source == self._id:
            return Forwarded(None, ())
        if not self._windows.setdefault(frame.source, DedupeWindow()).check_and_add(frame.seq):
            return Forwarded(None, ())
        return Forwarded(frame, tuple((p, data) for p in tree_neighbours if p != peer))
