"""Hybrid logical clock: wall-clock milliseconds plus a counter, packed in one int.

An HLC value is `(milliseconds << 16) | counter`. It only moves forward, stays close to the
wall clock, and orders causally related changes. The caller passes the wall time in; this
module must never read a clock itself.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_HLC = (1 << 63) - 1
MAX_FORWARD_SKEW_S = 300.0  # a remote clock further ahead than this does not drag ours along


def physical_ms(hlc: int) -> int:
    """The wall-clock milliseconds part of an HLC value."""
    return hlc >> COUNTER_BITS


@dataclass
class HybridClock:
    """The clock of one node; `last` is the highest value issued or observed."""

    last: int = 0

    def tick(self, wall_s: float) -> int:
        """A new value, greater than every value issued or observed so far."""
        wall = int(wall_s * 1000) << COUNTER_BITS
        self.last = wall if wall > self.last else self.last + 1
        return self.last

    def observe(self, remote: int, wall_s: float) -> None:
        """Take a remote value into account (bounded, so one bad clock cannot run us ahead)."""
        ceiling = int((wall_s + MAX_FORWARD_SKEW_S) * 1000) << COUNTER_BITS
        value = min(remote, ceiling, MAX_HLC)
        if value > self.last:
            self.last = value
