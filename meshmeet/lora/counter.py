"""Frame counters that never repeat across restarts: reserve a block on disk before using it.

A LoRa frame's nonce is (source, counter), so a counter reused under the commune key would reuse a
keystream. The node persists a high-water mark `reserved`; frames may use counters below it. At
start the core resumes at the persisted mark (skipping whatever the last run reserved but did not
use); before a frame leaves whose counter reaches the mark, the node writes a new mark
COUNTER_MARGIN above and only then transmits. This module is sans-IO: it must never touch a file
or a clock; it only says when and what to persist.
"""

from __future__ import annotations

COUNTER_MARGIN = 256


class CounterReservation:
    def __init__(self, persisted: int, margin: int = COUNTER_MARGIN) -> None:
        if persisted < 0 or margin < 1:
            raise ValueError("bad counter reservation")
        self.reserved = persisted
        self.margin = margin

    @property
    def resume_at(self) -> int:
        """The first counter this run may use: everything below may have been sent before."""
        return self.reserved

    def needed(self, next_counter: int) -> int | None:
        """The mark to persist before a frame using counters below `next_counter` may leave, or None."""
        return next_counter + self.margin if next_counter > self.reserved else None

    def saved(self, mark: int) -> None:
        """Record that `mark` is durably on disk."""
        self.reserved = max(self.reserved, mark)
