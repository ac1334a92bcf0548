"""Fragments (media kind 0x05): a big video chunk cut into pieces on one link and joined on the far side (sans-IO).

A relay sends a video chunk longer than FRAGMENT_BYTES as even pieces of at most
FRAGMENT_PIECE_BYTES, so that audio goes out between the pieces instead of waiting behind a whole
keyframe; the relay at the other end of the link joins them (Reassembly) before relaying or
recording the chunk. Fragments are a property of one link (docs/protocol/media.md, "Fragment").
This module must never do I/O, read a clock, decide what a link sends when, or raise anything but
MediaFormatError for bytes.
"""

from __future__ import annotations

from meshmeet.media import chunk as C

FRAGMENT_BYTES = 700  # video chunks above this go out in pieces, audio slipping in between
FRAGMENT_PIECE_BYTES = 500  # pieces are cut evenly to at most this (62 ms at 64 kbit/s)


def piece_count(nbytes: int) -> int:
    """How many messages a chunk of `nbytes` takes on a link."""
    return 1 if nbytes <= FRAGMENT_BYTES else -(-nbytes // FRAGMENT_PIECE_BYTES)


def next_piece(data: bytes, piece_bytes: int) -> tuple[bytes, bytes, int]:
    """The next message for a chunk whose unsent part is `data` (`piece_bytes` 0: nothing sent yet):
    (message, what is left to send, the piece size to cut the rest with)."""
    if not piece_bytes:  # not started
        if len(data) <= FRAGMENT_BYTES:
            return data, b"", 0
        piece_bytes = -(-len(data) // piece_count(len(data)))
        first = True
    else:
        first = False
    piece, rest = data[:piece_bytes], data[piece_bytes:]
    return C.encode_fragment(C.Fragment(first, not rest, piece)), rest, piece_bytes


class Reassembly:
    """The pieces received so far on each link, until their chunk is whole."""

    def __init__(self) -> None:
        self._pieces: dict[str, bytearray] = {}  # link -> pieces of a fragmented chunk

    def join(self, link: str, data: bytes) -> bytes | None:
        """A fragment message from `link`: the whole chunk once its last piece came, else None."""
        frag = C.parse(data)
        assert isinstance(frag, C.Fragment)
        buf = self._pieces.get(link)
        if frag.first:
            buf = self._pieces[link] = bytearray()
        elif buf is None:
            return None  # the start was lost (link restarted): drop the rest quietly
        buf += frag.piece
        if len(buf) > C.MAX_MESSAGE_BYTES:
            del self._pieces[link]
            raise C.MediaFormatError("fragmented chunk too large")
        if not frag.last:
            return None
        del self._pieces[link]
        whole = bytes(buf)
        if C.peek_kind(whole) != C.KIND_CHUNK:
            raise C.MediaFormatError("fragments must carry a chunk")
        return whole

    def forget(self, link: str) -> None:
        self._pieces.pop(link, None)

    def clear(self) -> None:
        self._pieces.clear()
