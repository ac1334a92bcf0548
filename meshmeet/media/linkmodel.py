"""A rate cap for one outgoing link: a token bucket that models serialization delay (sans-IO).

Used by the relay to emulate a weak link in tests and benchmarks (e.g. 64 kbit/s into a hall),
and usable to pace a real metered link. It counts what the emulated link really carries: each
media message plus that link's per-message framing (the constants below). It must never sleep or
read a clock: callers pass `now`.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE_CAP_BURST_S = 0.02  # bytes allowed back-to-back after an idle spell, as seconds of rate

# Bytes each media message costs on a link on top of its own bytes (docs/protocol/link.md: a DATA
# frame is 2 length + 1 type + 16 tag = 19 B, and the body starts with the service byte 0x40).
MESH_LINK_FRAMING_BYTES = 19 + 1
# Node -> browser WebSocket frames are unmasked: a 2 B header up to 125 B of payload (audio, the
# traffic that matters on a weak link), 4 B up to 64 KiB.
WS_FRAMING_BYTES = 2


@dataclass
class RateCap:
    """A message may start when the bucket is not in debt; sending it puts the bucket in debt."""

    rate_bps: float
    framing_bytes: int = 0  # added to every message (the link's own framing)
    _tokens: float = 0.0
    _t: float | None = None

    def _refill(self, now: float) -> None:
        burst = self.rate_bps / 8 * RATE_CAP_BURST_S
        if self._t is None:
            self._tokens = burst
        else:
            self._tokens = min(burst, self._tokens + (now - self._t) * self.rate_bps / 8)
        self._t = now

    def can_send(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= 0

    def sent(self, nbytes: int, now: float) -> None:
        """A message of `nbytes` (without framing) went out."""
        self._refill(now)
        self._tokens -= nbytes + self.framing_bytes

    def ready_at(self, now: float) -> float:
        """When the next message may start (now if already allowed)."""
        self._refill(now)
        return now if self._tokens >= 0 else now + (-self._tokens) * 8 / self.rate_bps
