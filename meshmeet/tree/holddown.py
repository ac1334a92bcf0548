"""Hold-down for flapping links: a link that keeps going down waits longer before it may carry the tree.

The first time a link comes up (or comes back after one loss) it is usable at once, so a root that
restarts takes the tree back immediately. Every further loss within FLAP_WINDOW_S doubles the wait,
up to HOLD_DOWN_MAX_S. This module must never read a clock: times come in as arguments.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

FLAP_WINDOW_S = 60.0
HOLD_DOWN_BASE_S = 2.0
HOLD_DOWN_MAX_S = 64.0
MAX_REMEMBERED_DOWNS = 16


@dataclass(frozen=True)
class HoldDownPolicy:
    """How long a flapping link is held down."""

    flap_window_s: float = FLAP_WINDOW_S
    base_s: float = HOLD_DOWN_BASE_S
    max_s: float = HOLD_DOWN_MAX_S

    def hold_s(self, recent_downs: int) -> float:
        """The wait after a link_up given how many losses the link had within the window."""
        if recent_downs <= 1:
            return 0.0
        return min(self.max_s, self.base_s * (2 ** (recent_downs - 2)))


@dataclass
class FlapHistory:
    """Loss times of one link, newest last."""

    downs: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_REMEMBERED_DOWNS))

    def record_down(self, now: float) -> None:
        self.downs.append(now)

    def recent_downs(self, now: float, window_s: float) -> int:
        return sum(1 for t in self.downs if now - t <= window_s)

    def usable_at(self, now: float, policy: HoldDownPolicy) -> float:
        """When a link that comes up at `now` may be used for routes."""
        return now + policy.hold_s(self.recent_downs(now, policy.flap_window_s))
