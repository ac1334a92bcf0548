"""Splitting a message plaintext into frames that fit the modem MTU, and putting it back.

Fragments of one message use consecutive counters, so the message id is the counter of
fragment 0 and needs no bytes of its own. This module must never hold unbounded state: partial
messages expire after REASSEMBLY_S and at most MAX_PARTIAL are kept. It never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .frames import FRAG_BYTES, HEADER_BYTES, MAX_FRAGMENTS, TAG_BYTES, Frame

REASSEMBLY_S = 900.0
MAX_PARTIAL = 64


class TooLargeError(ValueError):
    """The message needs more than MAX_FRAGMENTS frames at this MTU."""


def split(plaintext: bytes, mtu_bytes: int) -> list[bytes]:
    """Chunks of plaintext: one if it fits whole, else up to MAX_FRAGMENTS fragment payloads."""
    whole = mtu_bytes - HEADER_BYTES - TAG_BYTES
    if whole <= 0:
        raise ValueError("MTU too small for a frame")
    if len(plaintext) <= whole:
        return [plaintext]
    per = whole - FRAG_BYTES
    chunks = [plaintext[i : i + per] for i in range(0, len(plaintext), per)]
    if len(chunks) > MAX_FRAGMENTS:
        raise TooLargeError(f"{len(plaintext)} B needs {len(chunks)} fragments at MTU {mtu_bytes}")
    return chunks


@dataclass
class _Partial:
    kind: int
    last: int
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    """Collects fragments keyed by (source, first counter)."""

    def __init__(self) -> None:
        self._partial: dict[tuple[int, int], _Partial] = {}

    def add(self, frame: Frame, now: float) -> tuple[int, bytes] | None:
        """Returns (first_counter, plaintext) when a message is complete."""
        if frame.fragment is None:
            return frame.counter, frame.payload
        index, last = frame.fragment
        first = frame.counter - index
        if first < 0:
            return None
        key = (frame.source, first)
        p = self._partial.get(key)
        if p is None:
            if len(self._partial) >= MAX_PARTIAL:
                oldest = min(self._partial, key=lambda k: self._partial[k].started)
                del self._partial[oldest]
            p = self._partial[key] = _Partial(frame.kind, last, now)
        if p.kind != frame.kind or p.last != last:
            return None  # inconsistent fragment: ignore it, keep the rest
        p.parts[index] = frame.payload
        if len(p.parts) == last + 1:
            del self._partial[key]
            return first, b"".join(p.parts[i] for i in range(last + 1))
        return None

    def expire(self, now: float) -> None:
        for key in [k for k, p in self._partial.items() if p.started <= now - REASSEMBLY_S]:
            del self._partial[key]

    def next_expiry(self) -> float | None:
        return min((p.started + REASSEMBLY_S for p in self._partial.values()), default=None)

    def __len__(self) -> int:
        return len(self._partial)
