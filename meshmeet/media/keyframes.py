"""Requests going upstream to the source: merged and rate-limited per hop (sans-IO).

Keyframe requests: many subscribers asking for the same layer within one interval cost the
source one keyframe. Audio rate requests: soft state, the minimum over everything downstream,
repeated while wanted and forgotten when not refreshed. This module only decides *when* a
request may leave and with which value; it must never send, sleep or read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KEYFRAME_REQUEST_INTERVAL_S = 0.25  # at most one request per layer per hop in this interval
AUDIO_PRESETS_KBPS = (24, 16, 12)  # the presenter's Opus presets, best first (24: the default)
AUDIO_RATE_REQUEST_INTERVAL_S = 0.5  # at most one audio rate request per hop in this interval...
AUDIO_RATE_REFRESH_S = 2.0  # ...repeated this often while still wanted (soft state)
AUDIO_RATE_EXPIRE_S = 5.0  # a downstream request not refreshed for this long is forgotten
AUDIO_RATE_HOLD_S = 6.0  # the source returns to its chosen preset after this long without one


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


@dataclass
class AudioRateRequester:
    """Per hop: `want(key, kbps, now)` per wanting party, `due(now)` -> kbit/s to send upstream now."""

    interval_s: float = AUDIO_RATE_REQUEST_INTERVAL_S
    refresh_s: float = AUDIO_RATE_REFRESH_S
    expire_s: float = AUDIO_RATE_EXPIRE_S
    _wants: dict[object, tuple[int, float]] = field(default_factory=dict)  # key -> (kbit/s, refreshed at)
    _last_sent: float | None = None
    _last_kbps: int | None = None

    def want(self, key: object, kbps: int | None, now: float) -> None:
        """`key` (a link, or requests arriving from a link) wants at most `kbps`; None: no longer."""
        if kbps is None:
            self._wants.pop(key, None)
        else:
            self._wants[key] = (kbps, now)

    def resend(self) -> None:
        """The source changed: the current request goes out again as soon as the interval allows."""
        self._last_kbps = None

    def wanted_for(self, link: str, now: float) -> int | None:
        """What this hop asks for because of `link` (its own judgement or requests from it)."""
        vals = [kbps for key, (kbps, t) in self._wants.items()
                if key in (("link", link), ("from", link)) and now - t <= self.expire_s]
        return min(vals, default=None)

    def merged(self, now: float) -> int | None:
        """The minimum over live wants (stale ones are dropped); None when nobody wants less."""
        for key in [k for k, (_, t) in self._wants.items() if now - t > self.expire_s]:
            del self._wants[key]
        return min((kbps for kbps, _ in self._wants.values()), default=None)

    def due(self, now: float) -> int | None:
        """The merged request if one should leave now (changed, or its refresh is due), else None."""
        kbps = self.merged(now)
        if kbps is None:
            self._last_kbps = None  # the next want goes out as soon as the interval allows
            return None
        since = None if self._last_sent is None else now - self._last_sent
        if since is not None and (since < self.interval_s or (kbps == self._last_kbps and since < self.refresh_s)):
            return None
        self._last_sent, self._last_kbps = now, kbps
        return kbps

    def next_deadline(self, now: float) -> float | None:
        if not self._wants or self._last_sent is None:
            return now if self._wants else None
        kbps = min(k for k, _ in self._wants.values())
        wait = self.interval_s if kbps != self._last_kbps else self.refresh_s
        return max(now, self._last_sent + wait)
