"""Keyframe requests going upstream to the source: merged and rate-limited per hop (sans-IO).

Many subscribers asking for the same layer within one interval cost the source one keyframe.
(Audio rate requests, the other request that travels upstream, live in audio_rate.py.) This module
only decides *when* a request may leave; it must never send, sleep or read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KEYFRAME_REQUEST_INTERVAL_S = 0.25  # at most one request per layer per hop in this interval


@dataclass
class KeyframeRequester:
    """Per hop: `request(layer, now)` -> send now?, `due(now)` -> layers whose wait has ended."""

    interval_s: float = KEYFRAME_REQUEST_INTERVAL_S
    _last_sent: dict[int, float] = field(default_factory=dict)
    _pending: set[int] = field(default_factory=set)

    def request(self, layer: int, now: float) -> bool:
        """True: send a request upstream now. False: merged into an earlier or a pending one."""
        last = self._last_sent.get(layer)
        if last is None or now - last >= self.interval_s:
            self._last_sent[layer] = now
            self._pending.discard(layer)
            return True
        self._pending.add(layer)
        return False

    def keyframe_seen(self, layer: int, now: float) -> None:
        """A keyframe of this layer passed: pending requests for it are answered."""
        last = self._last_sent.get(layer)
        if last is not None and now >= last:
            self._pending.discard(layer)

    def due(self, now: float) -> list[int]:
        """Layers whose merged request may leave now (call from the timer)."""
        out = [layer for layer in sorted(self._pending) if now - self._last_sent[layer] >= self.interval_s]
        for layer in out:
            self._pending.discard(layer)
            self._last_sent[layer] = now
        return out

    def next_deadline(self) -> float | None:
        if not self._pending:
            return None
        return min(self._last_sent[layer] + self.interval_s for layer in self._pending)

