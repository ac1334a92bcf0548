"""Padding probes: before a link climbs a quality level, does it keep up with that level's rate? (sans-IO)

The relay (relay.py) starts a PaddingProbe on a steady link whose estimate does not yet cover
the next level. While it runs, the link sends padding (media kind 0x04, lowest priority: only
when nothing else is queued) so that everything it carries adds up to the target rate; after
PROBE_S the rate it achieved says whether the link can carry the level. This module only keeps
the books of one probe; it must never choose a level, encode bytes, do I/O or read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBE_S = 0.6  # padding probe length
PROBE_SUCCESS_RATIO = 0.9  # achieved / target rate for a probe to pass
PADDING_MIN_BYTES = 64
PADDING_MAX_BYTES = 1200
PADDING_SLICE_S = 0.01  # one padding message carries this much time at the probe rate


@dataclass
class PaddingProbe:
    """One probe on one link, at `target_bps` (the link's framing included) from `started_at`."""

    target_bps: float
    started_at: float
    sent_bytes: int = 0  # everything the link carried since the start (media and padding, with framing)
    _achieved_bps: float | None = None  # frozen once PROBE_S has passed (a verdict may come later)

    def sent(self, nbytes: int) -> None:
        self.sent_bytes += nbytes

    def padding_bytes(self, now: float, framing_bytes: int) -> int | None:
        """Size of the padding message to send now to keep up the target rate, or None (ahead of it)."""
        owed = self.target_bps / 8 * (now - self.started_at) - self.sent_bytes
        if owed <= 0 or now - self.started_at >= PROBE_S:
            return None
        size = int(self.target_bps / 8 * PADDING_SLICE_S) - framing_bytes
        return max(PADDING_MIN_BYTES, min(PADDING_MAX_BYTES, size))

    def next_padding_at(self, now: float) -> float:
        """When the next padding message may be owed (pacing)."""
        return now + PADDING_SLICE_S

    def achieved_bps(self, now: float) -> float | None:
        """The rate the link carried, once the probe has run PROBE_S (then fixed); None before."""
        if self._achieved_bps is None:
            if now - self.started_at < PROBE_S:
                return None
            self._achieved_bps = self.sent_bytes * 8 / (now - self.started_at)
        return self._achieved_bps

    def passed(self, achieved_bps: float) -> bool:
        return achieved_bps >= PROBE_SUCCESS_RATIO * self.target_bps
