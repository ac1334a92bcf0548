"""The quality ladder a relay walks per outgoing link, the incoming rates it measures, and what a level needs.

Levels, best first: high layer with all temporal layers, high with temporal layers dropped, low
layer, audio only. Downgrades follow that order; upgrades climb it one level at a time. A level
fits a link when the link's drain estimate covers it with headroom (StreamRates.fits). This
module only describes levels and measures rates from `now` values passed in; it must never
decide congestion or move a link between levels (relay.py does), or read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshmeet.media.chunk import LAYER_HIGH, LAYER_LOW

RATE_WINDOW_S = 1.0
RATE_EWMA_WEIGHT = 0.5
UPGRADE_HEADROOM = 0.85  # a level fits if its rate <= this share of the estimate
KEYFRAME_HOL_MAX_S = 0.25  # ...and its keyframe holds audio back for at most this long


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
LOW_LEVEL = next(i for i, lv in enumerate(LEVELS) if lv.layer == LAYER_LOW)


def level_layers(level: Level, *, simulcast: bool) -> tuple[int, ...]:
    """The video layers a link gets at `level`: a simulcast link at a high level carries both."""
    if level.layer is None:
        return ()
    return (LAYER_HIGH, LAYER_LOW) if simulcast and level.layer == LAYER_HIGH else (level.layer,)


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
    for layer in level_layers(level, simulcast=simulcast):
        for tid in range(level.max_temporal_id + 1):
            total += meter.rate_bps(("v", layer, tid))
    return total


@dataclass
class StreamRates:
    """The source's stream as one hop measures it, and what a link needs to carry each level."""

    bits: RateMeter = field(default_factory=RateMeter)  # bits per second of each part
    messages: RateMeter = field(default_factory=RateMeter)  # one "byte" per message: rate_bps / 8 = messages per second
    key_bytes: dict[int, int] = field(default_factory=dict)  # video layer -> size of its latest keyframe

    def add_audio(self, nbytes: int, now: float) -> None:
        self.bits.add(("a",), nbytes, now)
        self.messages.add(("a",), 1, now)

    def add_video(self, layer: int, temporal_id: int, nbytes: int, messages: int, keyframe: bool,
                  now: float) -> None:
        """A video chunk of `nbytes` that takes `messages` messages on a link (fragments.py)."""
        self.bits.add(("v", layer, temporal_id), nbytes, now)
        self.messages.add(("v", layer, temporal_id), messages, now)
        if keyframe:
            self.key_bytes[layer] = nbytes

    def roll(self, now: float) -> None:
        self.bits.roll(now)
        self.messages.roll(now)

    def audio_bps(self) -> float:
        return self.bits.rate_bps(("a",))

    def audio_messages_per_s(self) -> float:
        return self.messages.rate_bps(("a",)) / 8

    def link_bps(self, level: int, *, simulcast: bool, framing_bytes: int) -> float:
        """What a link carries at `level`: the measured media rate plus the link's framing per message."""
        lv = LEVELS[level]
        media = level_rate_bps(self.bits, lv, simulcast=simulcast)
        return media + level_rate_bps(self.messages, lv, simulcast=simulcast) * framing_bytes

    def fits(self, level: int, estimate_bps: float, *, simulcast: bool, framing_bytes: int) -> bool:
        """Whether a link draining `estimate_bps` can carry `level`: its rate within the headroom,
        its video layers flowing, and their keyframes short enough not to hold audio back."""
        if self.link_bps(level, simulcast=simulcast, framing_bytes=framing_bytes) > UPGRADE_HEADROOM * estimate_bps:
            return False
        layers = level_layers(LEVELS[level], simulcast=simulcast)
        if any(self.bits.rate_bps(("v", layer, 0)) <= 0 for layer in layers):
            return False  # that layer is not flowing: it would only look like a level
        return all(self.key_bytes.get(layer, 0) * 8 / estimate_bps <= KEYFRAME_HOL_MAX_S for layer in layers)
