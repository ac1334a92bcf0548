"""Audio rate requests (media kind 0x06): when a hop asks its source for a lower Opus bitrate,
longer frames or in-band FEC (sans-IO).

Audio is one stream for every link. A link at the audio-only level that still cannot carry it
wants a lower preset (one of AUDIO_PRESETS_KBPS); a datagram link with receiver feedback
(feedback.py) also wants longer frames when it is narrow (less framing per second) and in-band FEC
when it loses packets (plan_audio). Each hop merges what its own links want and what arrived from
each downstream link (AudioWant.merge: the lowest bitrate, the longest frames, the highest FEC
loss), sends that upstream rate-limited, repeats it while it is wanted (soft state) and forgets
wants that are not refreshed; the source returns to its chosen encoding when the requests stop
(docs/protocol/media.md, "Audio rate request" and "Audio on weak links").

The relay (relay.py) owns one AudioRateControl: it reports congestion at audio-only, level
changes, requests from downstream and the timer, and puts the kbit/s it gets back on the wire.
This module must never do I/O, sleep, read a clock, encode or parse bytes, or choose a link's
quality level.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from meshmeet.media.chunk import AUDIO_DEFAULT_FRAME_MS, CHUNK_HEADER_BYTES

log = logging.getLogger(__name__)

AUDIO_PRESETS_KBPS = (24, 16, 12)  # the presenter's Opus presets, best first (24: the default)
AUDIO_RATE_REQUEST_INTERVAL_S = 0.5  # at most one audio rate request per hop in this interval...
AUDIO_RATE_REFRESH_S = 2.0  # ...repeated this often while still wanted (soft state)
AUDIO_RATE_EXPIRE_S = 5.0  # a downstream request not refreshed for this long is forgotten
AUDIO_RATE_HOLD_S = 6.0  # the source returns to its chosen preset after this long without one
AUDIO_FIT_SHARE = 0.95  # at audio-only, audio (with framing) fits a link if it needs at most this share of the estimate
AUDIO_FRAMES_PER_S = 50  # 20 ms Opus frames, until the meter has counted them
AUDIO_SQUEEZE_SETTLE_S = 2.0  # after asking for less, the source has switched and the queue drained by then...
AUDIO_SQUEEZE_URGENT_S = 0.5  # ...unless its audio is about to miss the deadline (dropped late): then sooner
NO_RATE_LIMIT_KBPS = 255  # a want for FEC or frames only: the source keeps its own bitrate
# What a narrow datagram link asks for, best first (kbit/s, frame ms): a lower bitrate first, then
# longer frames (fewer headers per second: a 60 ms frame carries a third of the 20 ms framing)
YOUNG_FRAME_MS = 40  # a datagram link of unknown room wants these frames: 16 kbit/s Opus in 20 ms datagrams is
# ~44 kbit/s on the wire (too much for a 32 kbit/s modem link, whose queue then fills while the request for
# less travels: ~1.6 s on a loaded machine), in 40 ms ones ~30 kbit/s; asked before the meeting's first frame
AUDIO_PLANS = ((24, 20), (16, 20), (16, 40), (12, 40), (12, 60))
FEC_MIN_LOSS = 0.01  # smoothed loss from which the source is asked for in-band FEC
FEC_MAX_PERCENT = 30  # packetlossperc asked for at most (Opus spends its bitrate on FEC above)


@dataclass(frozen=True)
class AudioWant:
    """What one party wants of the source's audio: at most `kbps`, frames of at least `frame_ms`,
    in-band FEC tuned for `fec_loss_percent` % loss (0: off)."""

    kbps: int = NO_RATE_LIMIT_KBPS
    frame_ms: int = AUDIO_DEFAULT_FRAME_MS
    fec_loss_percent: int = 0

    def merge(self, other: "AudioWant | None") -> "AudioWant":
        """Both wants at once: the lowest bitrate, the longest frames, the most FEC."""
        if other is None:
            return self
        return AudioWant(min(self.kbps, other.kbps), max(self.frame_ms, other.frame_ms),
                         max(self.fec_loss_percent, other.fec_loss_percent))

    @property
    def default(self) -> bool:
        return self == AudioWant()


def _merge(values) -> "AudioWant | int | None":
    """The merged want of several: plain kbit/s ints give their minimum, AudioWants merge."""
    vals = list(values)
    if not vals:
        return None
    if all(isinstance(v, int) for v in vals):
        return min(vals)
    out = AudioWant()
    for v in vals:
        out = out.merge(v if isinstance(v, AudioWant) else AudioWant(v))
    return out


def fec_percent(loss: float) -> int:
    """Opus packetlossperc for a smoothed loss fraction (0: FEC off)."""
    if not math.isfinite(loss) or loss < FEC_MIN_LOSS:
        return 0
    return min(FEC_MAX_PERCENT, math.ceil(loss * 100))


@dataclass(frozen=True)
class AudioLoad:
    """The audio stream as one link carries it: what this hop measures, plus the link's framing."""

    measured_bps: float  # audio media bits per second arriving at this hop
    frames_per_s: float  # audio messages per second arriving (0 until counted)
    framing_bytes: int  # what the link adds to each message

    def link_bps(self, kbps: int | None = None, frame_ms: int | None = None) -> float:
        """Bits per second on the link: as measured (kbps None), or with the source at that Opus
        bitrate (and frame duration: by default as many frames as measured, or 20 ms ones)."""
        frames_per_s = self.frames_per_s or AUDIO_FRAMES_PER_S
        if kbps is None:
            return self.measured_bps + frames_per_s * self.framing_bytes * 8
        if frame_ms is not None:
            frames_per_s = 1000 / frame_ms
        return kbps * 1000 + frames_per_s * (CHUNK_HEADER_BYTES + self.framing_bytes) * 8


def plan_audio(estimate_bps: float, load: AudioLoad) -> tuple[int, int] | None:
    """(kbit/s, frame ms) for a narrow datagram link (at audio-only): None while the audio as
    measured fits AUDIO_FIT_SHARE of its estimate, else the best of AUDIO_PLANS that does (the
    last one if none does)."""
    share = AUDIO_FIT_SHARE * estimate_bps
    if load.link_bps(None) <= share:
        return None
    return next((p for p in AUDIO_PLANS if load.link_bps(*p) <= share), AUDIO_PLANS[-1])


@dataclass
class AudioRateRequester:
    """Per hop: `want(key, value, now)` per wanting party, `due(now)` -> the merged value to send
    upstream now. Values are kbit/s ints (merged: the minimum) or AudioWants (AudioWant.merge)."""

    interval_s: float = AUDIO_RATE_REQUEST_INTERVAL_S
    refresh_s: float = AUDIO_RATE_REFRESH_S
    expire_s: float = AUDIO_RATE_EXPIRE_S
    _wants: dict[object, tuple[object, float]] = field(default_factory=dict)  # key -> (value, refreshed at)
    _last_sent: float | None = None
    _last_kbps: object = None

    def want(self, key: object, kbps: "int | AudioWant | None", now: float) -> None:
        """`key` (a link, or requests arriving from a link) wants at most `kbps`; None: no longer."""
        if kbps is None:
            self._wants.pop(key, None)
        else:
            self._wants[key] = (kbps, now)

    def resend(self) -> None:
        """The source changed: the current request goes out again at once (a new presenter's first
        frames are sent before any request can reach it: each 0.5 s waited is 0.5 s of audio it
        encodes as it likes, 20 ms frames that overfill a 32 kbit/s link)."""
        self._last_kbps = None
        self._last_sent = None

    def wanted_for(self, link: str, now: float) -> "AudioWant | int | None":
        """What this hop asks for because of `link` (its own judgement or requests from it)."""
        return _merge(v for key, (v, t) in self._wants.items()
                      if key in (("link", link), ("from", link)) and now - t <= self.expire_s)

    def merged(self, now: float) -> "AudioWant | int | None":
        """The merge of live wants (stale ones are dropped); None when nobody wants anything."""
        for key in [k for k, (_, t) in self._wants.items() if now - t > self.expire_s]:
            del self._wants[key]
        return _merge(v for v, _ in self._wants.values())

    def due(self, now: float) -> "AudioWant | int | None":
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
        kbps = _merge(v for v, _ in self._wants.values())
        wait = self.interval_s if kbps != self._last_kbps else self.refresh_s
        return max(now, self._last_sent + wait)


class AudioRateControl:
    """One hop's audio requests: what each of its links wants, merged with what came from downstream."""

    def __init__(self) -> None:
        self._requester = AudioRateRequester()
        self._link_wants: dict[str, tuple[int, float]] = {}  # link at audio-only -> (kbit/s wanted, asked at)
        self._plans: dict[str, tuple[int, int]] = {}  # datagram link at audio-only -> (kbit/s, frame ms)
        self._fec: dict[str, int] = {}  # lossy datagram link -> FEC packet loss %

    def squeeze(self, link: str, drain_bps: float, load: AudioLoad, now: float, *, urgent: bool = False) -> None:
        """`link` is at audio-only and congested, draining `drain_bps`: want the best preset that
        fits; if the queue is still long once the source had time to switch, one preset lower
        (`urgent`: its audio is close to the deadline, after AUDIO_SQUEEZE_URGENT_S only)."""
        want = self._link_wants.get(link)
        settle_s = AUDIO_SQUEEZE_URGENT_S if urgent else AUDIO_SQUEEZE_SETTLE_S
        if want is not None and now - want[1] >= settle_s:
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

    def plan(self, link: str, fit: tuple[int, int] | None) -> None:
        """A datagram link at audio-only: `fit` (kbit/s, frame ms) from plan_audio, or None (the
        audio fits). Sticky while the link stays at audio-only: it only ever moves down AUDIO_PLANS
        (the source's smaller stream fitting is no reason to ask for the bigger one again)."""
        old = self._plans.get(link)
        if fit is not None and fit in AUDIO_PLANS and (old is None or AUDIO_PLANS.index(fit) > AUDIO_PLANS.index(old)):
            log.debug("link %s: asking for %d kbit/s in %d ms frames", link, *fit)
            self._plans[link] = fit

    def set_fec(self, link: str, fec_loss_percent: int) -> None:
        """A datagram link loses this share of packets (smoothed, %): the source should add FEC."""
        if fec_loss_percent > 0:
            self._fec[link] = fec_loss_percent
        else:
            self._fec.pop(link, None)

    def video_fits(self, link: str) -> None:
        """`link` climbed back to a video level: audio at the source's own preset again."""
        self._link_wants.pop(link, None)
        self._plans.pop(link, None)

    def _own_want(self, link: str, at_audio_level: bool, young: bool = False) -> AudioWant | None:
        want = AudioWant(fec_loss_percent=self._fec.get(link, 0))
        if at_audio_level and young:
            want = want.merge(AudioWant(frame_ms=YOUNG_FRAME_MS))
        if at_audio_level:
            squeezed = self._link_wants.get(link)
            if squeezed is not None:
                want = want.merge(AudioWant(squeezed[0]))
            planned = self._plans.get(link)
            if planned is not None:
                kbps = planned[0] if planned[0] < AUDIO_PRESETS_KBPS[0] else NO_RATE_LIMIT_KBPS
                want = want.merge(AudioWant(kbps, planned[1]))
        return None if want.default else want

    def refresh(self, link: str, at_audio_level: bool, now: float, young: bool = False) -> None:
        """Timer, per link: keep what `link` wants alive (rate and frames only while it is at
        audio-only, FEC while it loses packets), else drop it. `young`: a datagram link whose room
        is not known yet (no estimate): at audio-only it wants YOUNG_FRAME_MS frames."""
        self._requester.want(("link", link), self._own_want(link, at_audio_level, young), now)

    def requested(self, link: str, want: "AudioWant | int", now: float) -> None:
        """A request arrived from downstream `link` (never the source's link)."""
        self._requester.want(("from", link), want if isinstance(want, AudioWant) else AudioWant(want), now)

    def remove_link(self, link: str) -> None:
        self._link_wants.pop(link, None)
        self._plans.pop(link, None)
        self._fec.pop(link, None)
        self._requester.want(("link", link), None, 0.0)
        self._requester.want(("from", link), None, 0.0)

    def source_changed(self) -> None:
        """The source (or the link towards it) changed: send the current request again soon."""
        self._requester.resend()

    def due(self, now: float) -> AudioWant | None:
        """What to ask the source for now, if a request should leave now."""
        return _as_want(self._requester.due(now))

    def next_deadline(self, now: float) -> float | None:
        return self._requester.next_deadline(now)

    def wanted_for(self, link: str, now: float) -> AudioWant | None:
        """What this hop asks for because of `link` (status), or None."""
        return _as_want(self._requester.wanted_for(link, now))


def _as_want(v: "AudioWant | int | None") -> AudioWant | None:
    return v if v is None or isinstance(v, AudioWant) else AudioWant(v)
