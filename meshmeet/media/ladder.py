"""The quality ladder a relay walks per outgoing link, and the incoming bitrate it measures.

Levels, best first: high layer with all temporal layers, high with temporal layers dropped, low
layer, audio only. Downgrades follow that order; upgrades climb it one level at a time. This
module only describes levels and measures rates from `now` values passed in; it must never
decide congestion (relay.py does) or read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshmeet.media.chunk import LAYER_HIGH, LAYER_LOW

RATE_WINDOW_S = 1.0
RATE_EWMA_WEIGHT = 0.5


@dataclass(frozen=True)
class Level:
    name: str  # what status reports: "high" | "low" | "audio"
    layer: int | None  # the video layer a subscriber gets (None: audio only)
    max_temporal_id: int


LEVELS: tuple[Level, ...] = (
    Level("high", LAYER_HIGH, 2),
    Level("high", LAYER_HIGH, 0),  # temporal layers dropped: a quarter of the frame rate
    Level("low", LAYER_LOW, 2),
    Level("audio", None, 0),
)
AUDIO_LEVEL = len(LEVELS) - 1


@dataclass
class RateMeter:
    """Bits per second of each stream key, over windows of RATE_WINDOW_S, smoothed."""

    _start: float | None = None
    _bytes: dict[object, int] = field(default_factory=dict)
    _rate_bps: dict[object, float] = field(default_factory=dict)

    def add(self, key: object, nbytes: int, now: float) -> None:
        self.roll(now)
        self._bytes[key] = self._bytes.get(key, 0) + nbytes

    def roll(self, now: float) -> None:
        if self._start is None:
            self._start = now
            return
        elapsed = now - self._start
        if elapsed < RATE_WINDOW_S:
            return
        keys = set(self._bytes) | set(self._rate_bps)
        for k in keys:
            r = self._bytes.get(k, 0) * 8 / elapsed
            old = self._rate_bps.get(k)
            self._rate_bps[k] = r if old is None else old * (1 - RATE_EWMA_WEIGHT) + r * RATE_EWMA_WEIGHT
        self._bytes.clear()
        self._start = now

    def rate_bps(self, key: object) -> float:
        """Smoothed rate; before a window has closed, a rough figure from the open window."""
        r = self._rate_bps.get(key)
        if r is not None:
            return r
        return self._bytes.get(key, 0) * 8 / RATE_WINDOW_S


def level_rate_bps(meter: RateMeter, level: Level, *, simulcast: bool) -> float:
    """Expected bitrate of a link at this level: audio + the video it would carry."""
    total = meter.rate_bps(("a",))
    if level.layer is None:
        return total
    layers = (LAYER_HIGH, LAYER_LOW) if simulcast and level.layer == LAYER_HIGH else (level.layer,)
    for layer in layers:
        for tid in range(level.max_temporal_id + 1):
            total += meter.rate_bps(("v", layer, tid))
    return total
