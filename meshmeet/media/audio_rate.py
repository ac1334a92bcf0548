"""Audio rate requests (media kind 0x06): when a hop asks its source for a lower Opus bitrate (sans-IO).

Audio is one stream for every link. A link at the audio-only level that still cannot carry it
wants a lower preset (one of AUDIO_PRESETS_KBPS). Each hop merges what its own links want and
what arrived from each downstream link as the minimum, sends that upstream rate-limited, repeats
it while it is wanted (soft state) and forgets wants that are not refreshed; the source returns to
its chosen preset when the requests stop (docs/protocol/media.md, "Audio rate request").

The relay (relay.py) owns one AudioRateControl: it reports congestion at audio-only, level
changes, requests from downstream and the timer, and puts the kbit/s it gets back on the wire.
This module must never do I/O, sleep, read a clock, encode or parse bytes, or choose a link's
quality level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from meshmeet.media.chunk import CHUNK_HEADER_BYTES

log = logging.getLogger(__name__)

AUDIO_PRESETS_KBPS = (24, 16, 12)  # the presenter's Opus presets, best first (24: the default)
AUDIO_RATE_REQUEST_INTERVAL_S = 0.5  # at most one audio rate request per hop in this interval...
AUDIO_RATE_REFRESH_S = 2.0  # ...repeated this often while still wanted (soft state)
AUDIO_RATE_EXPIRE_S = 5.0  # a downstream request not refreshed for this long is forgotten
AUDIO_RATE_HOLD_S = 6.0  # the source returns to its chosen preset after this long without one
AUDIO_FIT_SHARE = 0.95  # at audio-only, audio (with framing) fits a link if it needs at most this share of the estimate
AUDIO_FRAMES_PER_S = 50  # 20 ms Opus frames, until the meter has counted them
AUDIO_SQUEEZE_SETTLE_S = 2.0  # after asking for less, the source has switched and the queue drained by then


@dataclass(frozen=True)
class AudioLoad:
    """The audio stream as one link carries it: what this hop measures, plus the link's framing."""

    measured_bps: float  # audio media bits per second arriving at this hop
    frames_per_s: float  # audio messages per second arriving (0 until counted)
    framing_bytes: int  # what the link adds to each message

    def link_bps(self, kbps: int | None = None) -> float:
        """Bits per second on the link: as measured (kbps None), or with the source at that Opus bitrate."""
        frames_per_s = self.frames_per_s or AUDIO_FRAMES_PER_S
        if kbps is None:
            return self.measured_bps + frames_per_s * self.framing_bytes * 8
        return kbps * 1000 + frames_per_s * (CHUNK_HEADER_BYTES + self.framing_bytes) * 8


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


class AudioRateControl:
    """One hop's audio rate requests: what each of its links wants, merged with what came from downstream."""

    def __init__(self) -> None:
        self._requester = AudioRateRequester()
        self._link_wants: dict[str, tuple[int, float]] = {}  # link at audio-only -> (kbit/s wanted, asked at)

    def squeeze(self, link: str, drain_bps: float, load: AudioLoad, now: float) -> None:
        """`link` is at audio-only and congested, draining `drain_bps`: want the best preset that
        fits; if the queue is still long once the source had time to switch, one preset lower."""
        want = self._link_wants.get(link)
        if want is not None and now - want[1] >= AUDIO_SQUEEZE_SETTLE_S:
            lower = [p for p in AUDIO_PRESETS_KBPS if p < want[0]]
            if lower:
                self._link_wants[link] = (lower[0], now)
            return
        if drain_bps <= 0 or load.link_bps(None) <= AUDIO_FIT_SHARE * drain_bps:
            return  # the audio fits: the queue is a leftover of the video that was shed
        fit = next((p for p in AUDIO_PRESETS_KBPS if load.link_bps(p) <= AUDIO_FIT_SHARE * drain_bps),
                   AUDIO_PRESETS_KBPS[-1])
        if want is None or fit < want[0]:
            log.debug("link %s: audio needs %.0f bit/s of %.0f: asking for %d kbit/s", link,
                      load.link_bps(None), drain_bps, fit)
            self._link_wants[link] = (fit, now)

    def video_fits(self, link: str) -> None:
        """`link` climbed back to a video level: audio at the source's own preset again."""
        self._link_wants.pop(link, None)

    def refresh(self, link: str, at_audio_level: bool, now: float) -> None:
        """Timer, per link: keep what `link` wants alive while it is at audio-only (else drop it)."""
        want = self._link_wants.get(link) if at_audio_level else None
        self._requester.want(("link", link), None if want is None else want[0], now)

    def requested(self, link: str, kbps: int, now: float) -> None:
        """A request for at most `kbps` arrived from downstream `link` (never the source's link)."""
        self._requester.want(("from", link), kbps, now)

    def remove_link(self, link: str) -> None:
        self._link_wants.pop(link, None)
        self._requester.want(("link", link), None, 0.0)
        self._requester.want(("from", link), None, 0.0)

    def source_changed(self) -> None:
        """The source (or the link towards it) changed: send the current request again soon."""
        self._requester.resend()

    def due(self, now: float) -> int | None:
        """The kbit/s to ask the source for now, if a request should leave now."""
        return self._requester.due(now)

    def next_deadline(self, now: float) -> float | None:
        return self._requester.next_deadline(now)

    def wanted_for(self, link: str, now: float) -> int | None:
        """The lower bitrate this hop asks for because of `link` (status), or None."""
        return self._requester.wanted_for(link, now)
