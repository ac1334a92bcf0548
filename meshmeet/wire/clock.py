"""Clock probe messages (link service 0xB0): how far a peer's wall clock is from ours.

NTP's idea on one link, sans-IO: A sends ASK(t1 = A's wall clock, ms); B answers ANSWER(t1, t2 = B's
wall clock when the ask arrived); A, at t3, knows the offset B - A ≈ t2 - (t1 + t3) / 2 within
±RTT/2. Only `meshmeet doctor` and status read the result; nothing in the node trusts a peer's clock
because of it. This module must never read a clock or do I/O: times come in as arguments.
Format: docs/protocol/clock.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ASK = 0x01
ANSWER = 0x02
ASK_BYTES = 9
ANSWER_BYTES = 17
MAX_PROBE_AGE_MS = 60_000  # an answer to an ask older than this (or from the future) is ignored
_ASK = struct.Struct(">BQ")
_ANSWER = struct.Struct(">BQQ")


@dataclass(frozen=True)
class ClockSample:
    offset_ms: float  # peer's wall clock minus ours
    rtt_ms: float


def make_ask(now_ms: int) -> bytes:
    return _ASK.pack(ASK, now_ms)


def on_message(body: bytes, now_ms: int) -> tuple[bytes | None, ClockSample | None]:
    """(reply to send, sample learned) for one received body; hostile bytes give (None, None)."""
    if len(body) == ASK_BYTES and body[0] == ASK:
        _, t1 = _ASK.unpack(body)
        return _ANSWER.pack(ANSWER, t1, now_ms), None
    if len(body) == ANSWER_BYTES and body[0] == ANSWER:
        _, t1, t2 = _ANSWER.unpack(body)
        rtt = now_ms - t1
        if not 0 <= rtt <= MAX_PROBE_AGE_MS:
            return None, None
        return None, ClockSample(offset_ms=t2 - (t1 + now_ms) / 2, rtt_ms=float(rtt))
    return None, None
