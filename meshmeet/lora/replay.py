"""Duplicate and replay suppression by (source, counter), one sliding window per source.

A frame is new when its counter is above the source's highest seen, or within the last
WINDOW_FRAMES and not yet seen. Everything else (a flood echo, a replay) is a duplicate. This
module must never grow without bound: it keeps at most WINDOW_FRAMES counters per source and
MAX_SOURCES sources (one per roster short id).
"""

from __future__ import annotations

WINDOW_FRAMES = 512
MAX_SOURCES = 65536


class ReplayWindow:
    def __init__(self, state: dict[int, tuple[int, int]] | None = None) -> None:
        # source -> (highest counter, bitmap of the WINDOW_FRAMES counters below and at highest)
        self._seen: dict[int, tuple[int, int]] = dict(state or {})

    def check_and_mark(self, source: int, counter: int) -> bool:
        """True if (source, counter) is new; marks it seen."""
        highest, bits = self._seen.get(source, (-1, 0))
        if counter > highest:
            shift = counter - highest
            bits = ((bits << shift) | 1) & ((1 << WINDOW_FRAMES) - 1) if shift < WINDOW_FRAMES else 1
            self._seen[source] = (counter, bits)
            return True
        age = highest - counter
        if age >= WINDOW_FRAMES or bits >> age & 1:
            return False
        self._seen[source] = (highest, bits | (1 << age))
        return True

    def seen(self, source: int, counter: int) -> bool:
        highest, bits = self._seen.get(source, (-1, 0))
        if counter > highest:
            return False
        age = highest - counter
        return age >= WINDOW_FRAMES or bool(bits >> age & 1)

    def export(self) -> dict[int, tuple[int, int]]:
        """State to persist across restarts, so old frames are not accepted again."""
        return dict(self._seen)
