"""The media relay core (sans-IO): what each outgoing link gets, in which order, at which quality.

One source (the link chunks come from, or the local presenter) fans out to many links: tree
neighbours (simulcast: both video layers) and browsers (one layer). This module coordinates, per
link: an audio queue served before a video queue, congestion read from queue delay, moves along
the quality ladder, and video that (re)starts or switches layer only at a keyframe of the target
layer. The parts it owns and calls, one idea each:

  ladder.py      the levels, the incoming rates, and whether a level fits a link's estimate
  keyframes.py   keyframe requests, merged and rate-limited upstream
  audio_rate.py  audio rate requests (kind 0x06): a link at audio-only that still cannot carry the
                 audio (it is one stream for every link, tiny next to video, as in SFUs) makes
                 this hop ask the source for a lower Opus preset; this module sends what it says
  drain.py       each link's drain estimate
  probe.py       padding probes before an upgrade
  fragments.py   big video chunks cut into pieces on a link (audio slips in between), joined on arrival
  linkmodel.py   per-message framing, and an optional rate cap for emulated weak links

Link rates (estimates, probes, caps, what a level needs) count each message's framing on that
link (mesh link or WebSocket).

Drivers call `receive()` with bytes from a link, `pop()` when a link can take a message,
`tick()` at `next_deadline()`, and send the `Outgoing` control messages they are given. This
module must never do I/O, sleep, read a clock, or raise anything but MediaFormatError for bytes.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from meshmeet.media import chunk as C
from meshmeet.media.audio_rate import AudioLoad, AudioRateControl
from meshmeet.media.drain import DrainEstimate
from meshmeet.media.fragments import Reassembly, next_piece, piece_count
from meshmeet.media.keyframes import KeyframeRequester
from meshmeet.media.ladder import AUDIO_LEVEL, LEVELS, LOW_LEVEL, UPGRADE_HEADROOM, StreamRates, level_layers
from meshmeet.media.linkmodel import MESH_LINK_FRAMING_BYTES, WS_FRAMING_BYTES, RateCap
from meshmeet.media.probe import PaddingProbe

log = logging.getLogger(__name__)

DOWNGRADE_QUEUE_MS = 150.0  # a head-of-queue older than this means the link is congested...
DOWNGRADE_CONFIRM_S = 0.05  # ...when it still is this much later (a process stall drains at once)
STEADY_QUEUE_MS = 60.0  # below this the link counts as steady
AUDIO_MAX_QUEUE_MS = 500.0  # audio older than this is late for any jitter buffer: dropped
DOWNGRADE_HOLD_S = 0.3  # after a downgrade, let the queue drain before judging again
UPGRADE_STEADY_S = 1.0  # steady time before probing for the next level (first try)
UPGRADE_BACKOFF_MAX_S = 3.0  # failed probes double the wait up to this
LAYER_FLOWING_S = 0.5  # a video layer with no frame for this long is not flowing (upstream shed it)


@dataclass(frozen=True)
class Outgoing:
    """A control message to put on `link` now (keyframe requests upstream, to the source)."""

    link: str
    data: bytes


@dataclass(frozen=True)
class LinkStats:
    peer: str
    layer: str  # "high" | "low" | "audio"
    queue_ms: float
    estimate_kbps: float
    audio_request_kbps: int | None = None  # the lower Opus bitrate asked for because of this link


@dataclass
class _Link:
    id: str
    simulcast: bool
    level: int
    best_level: int = 0  # never climbs above this (a tablet that wants the low layer only)
    cap: RateCap | None = None
    framing_bytes: int = 0  # what the link adds to each message (counted in every rate)
    audio: deque = field(default_factory=deque)  # (t_enqueued, bytes)
    video: deque = field(default_factory=deque)  # (t_enqueued, bytes, layer, tid, piece size once cut, else 0)
    sending: dict = field(default_factory=dict)  # layer -> decoder continuity established
    eff_tid: dict = field(default_factory=dict)  # layer -> max temporal id forwarded now
    last_change: float = 0.0
    hold_until: float = 0.0
    backoff_s: float = UPGRADE_STEADY_S
    steady_since: float = 0.0
    probe: PaddingProbe | None = None  # running before an upgrade
    drain: DrainEstimate = field(default_factory=DrainEstimate)
    congested_since: float | None = None  # queue above STEADY_QUEUE_MS since then
    over_since: float | None = None  # first judge that saw the queue above DOWNGRADE_QUEUE_MS
    dropped_audio: int = 0
    max_audio_wait_s: float = 0.0  # longest an audio chunk waited here (diagnostics; reset by caller)


class MediaRelay:
    """See the module docstring. `source` is the link chunks arrive on (None: taken from the first)."""

    def __init__(self, *, source: str | None = None, keep_accepted: bool = False) -> None:
        self.source = source
        # whole messages taken from the source, for a driver that also hands them on elsewhere
        # (the node's own browsers): drained by take_accepted(); None when not wanted
        self._accepted: list[bytes] | None = [] if keep_accepted else None
        self._layer_seen: dict[int, float] = {}  # video layer -> last time a frame of it arrived
        self._links: dict[str, _Link] = {}
        self._configs: dict[tuple[int, int], bytes] = {}
        self._rates = StreamRates()
        self._kf = KeyframeRequester()
        self._audio_rate = AudioRateControl()
        self._reassembly = Reassembly()  # pieces of fragmented chunks, per link
        self.chunks_in = 0
        self.format_errors = 0

    # ---- links -------------------------------------------------------------------------
    def add_link(self, link: str, now: float, *, simulcast: bool = False, start_level: int = 0,
                 best_level: int = 0, framing_bytes: int | None = None) -> list[Outgoing]:
        """A new downstream link (tree neighbour: simulcast=True; browser: False).

        `framing_bytes`: what the link adds per message; by default a mesh link's for a tree
        neighbour (simulcast) and a WebSocket's for a browser."""
        start_level = max(start_level, best_level)
        if framing_bytes is None:
            framing_bytes = MESH_LINK_FRAMING_BYTES if simulcast else WS_FRAMING_BYTES
        lk = _Link(link, simulcast, start_level, best_level, last_change=now, steady_since=now,
                   framing_bytes=framing_bytes)
        self._links[link] = lk
        for key in sorted(self._configs):  # late joiner: decoder configs first
            lk.audio.append((now, self._configs[key]))
        return self._request_for_level(lk, now)

    def remove_link(self, link: str) -> None:
        self._links.pop(link, None)
        self._reassembly.forget(link)
        self._audio_rate.remove_link(link)
        if link == self.source:
            self.source = None

    def set_source(self, link: str | None) -> None:
        """The floor moved: forget the old source's configs; new chunks come from `link`."""
        self.source = link
        self._configs.clear()
        self._audio_rate.source_changed()
        for lk in self._links.values():
            lk.sending.clear()
            lk.video.clear()

    def move_source(self, link: str | None) -> None:
        """The same source is now reached over another link (the tree changed): keep configs."""
        self.source = link
        self._reassembly.clear()
        self._audio_rate.source_changed()

    def request_keyframes(self, now: float) -> list[Outgoing]:
        """Ask upstream for what every link is waiting for (e.g. after the source changed)."""
        out: list[Outgoing] = []
        for lk in self._links.values():
            out += self._request_for_level(lk, now)
        return out

    def take_accepted(self) -> list[bytes]:
        """Whole configs and chunks accepted from the source since the last call."""
        if self._accepted is None:
            return []
        out, self._accepted = self._accepted, []
        return out

    def set_rate_cap(self, link: str, rate_bps: float | None) -> None:
        """Emulate (or pace) a link at `rate_bps`; None lifts the cap."""
        lk = self._links[link]
        lk.cap = None if rate_bps is None else RateCap(rate_bps, lk.framing_bytes)

    def links(self) -> list[str]:
        return list(self._links)

    # ---- input ---------------------------------------------------------------------------
    def receive(self, link: str, data: bytes, now: float) -> list[Outgoing]:
        """Bytes from `link` (the local presenter is a link too). MediaFormatError if malformed."""
        kind = C.peek_kind(data)
        if kind == C.KIND_PADDING:
            return []
        if kind == C.KIND_FRAGMENT:
            whole = self._reassembly.join(link, data)
            if whole is None:
                return []
            data, kind = whole, C.KIND_CHUNK
        if kind == C.KIND_KEYFRAME_REQUEST:
            req = C.parse(data)
            assert isinstance(req, C.KeyframeRequest)
            return self._ask_upstream(req.layer, now)
        if kind == C.KIND_AUDIO_RATE_REQUEST:
            req = C.parse(data)
            assert isinstance(req, C.AudioRateRequest)
            if link == self.source:
                return []  # requests travel away from the source only
            self._audio_rate.requested(link, req.kbps, now)
            return self._audio_rate_due(now)
        if self.source is None:
            self.source = link
        elif link != self.source:
            return []  # not the floor holder: ignored
        if kind == C.KIND_CONFIG:
            cfg = C.parse(data)
            assert isinstance(cfg, C.DecoderConfig)
            self._configs[(cfg.track, cfg.layer)] = bytes(data)
            if self._accepted is not None:
                self._accepted.append(bytes(data))
            for lk in self._links.values():
                if lk.id != link:
                    lk.audio.append((now, data))
            return []
        info = C.peek_chunk(data)
        self.chunks_in += 1
        n = len(data)
        if self._accepted is not None:
            self._accepted.append(bytes(data))
        if info.track == C.TRACK_AUDIO:
            self._rates.add_audio(n, now)
            for lk in self._links.values():
                if lk.id != link:
                    lk.audio.append((now, data))
            return []
        self._rates.add_video(info.layer, info.temporal_id, n, piece_count(n), info.keyframe, now)
        self._layer_seen[info.layer] = now
        if info.keyframe:
            self._kf.keyframe_seen(info.layer, now)
        out: list[Outgoing] = []
        for lk in self._links.values():
            if lk.id != link and self._offer_video(lk, info, data, now):
                out += self._ask_upstream(info.layer, now)
        return out

    def _flowing(self, layer: int, now: float | None) -> bool:
        seen = self._layer_seen.get(layer)
        return now is None or (seen is not None and now - seen < LAYER_FLOWING_S)

    def _wanted_layers(self, lk: _Link, now: float | None = None) -> tuple[int, ...]:
        layers = level_layers(LEVELS[lk.level], simulcast=lk.simulcast)
        if (layers == (C.LAYER_HIGH,) and lk.best_level <= LOW_LEVEL and now is not None
                and not self._flowing(C.LAYER_HIGH, now) and self._flowing(C.LAYER_LOW, now)):
            return (C.LAYER_LOW,)  # a browser's high layer was shed upstream: a picture beats none
        return layers

    def _offer_video(self, lk: _Link, info: C.ChunkInfo, data: bytes, now: float) -> bool:
        """Queue the frame for `lk` if it gets it; True when `lk` waits for a keyframe of this layer."""
        layer, tid = info.layer, info.temporal_id
        wanted = self._wanted_layers(lk, now)
        target_tid = LEVELS[lk.level].max_temporal_id
        if layer in wanted:
            if not lk.sending.get(layer):
                if not info.keyframe:
                    return True  # (re)start only at a keyframe of this layer: ask for one
                lk.sending[layer] = True
                lk.eff_tid[layer] = target_tid
            elif tid == 0:
                lk.eff_tid[layer] = target_tid  # temporal up-switch only at a base-layer frame
            else:
                lk.eff_tid[layer] = min(lk.eff_tid.get(layer, target_tid), target_tid)
            if tid <= lk.eff_tid[layer]:
                lk.video.append((now, data, layer, tid, 0))
            return False
        # not wanted: keep the old layer going (base frames only) until a wanted one has started
        if lk.sending.get(layer) and wanted and not any(lk.sending.get(w) for w in wanted) and tid == 0:
            lk.video.append((now, data, layer, tid, 0))
        else:
            lk.sending[layer] = False
        return False

    def _ask_upstream(self, layer: int, now: float) -> list[Outgoing]:
        if self.source is None or not self._kf.request(layer, now):
            return []
        return [Outgoing(self.source, C.encode_keyframe_request(C.KeyframeRequest(layer)))]

    def _audio_rate_due(self, now: float) -> list[Outgoing]:
        kbps = self._audio_rate.due(now)
        if kbps is None or self.source is None:
            return []
        return [Outgoing(self.source, C.encode_audio_rate_request(C.AudioRateRequest(kbps)))]

    def _request_for_level(self, lk: _Link, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        for layer in self._wanted_layers(lk, now):
            if not lk.sending.get(layer):
                out += self._ask_upstream(layer, now)
        return out

    # ---- output --------------------------------------------------------------------------
    def pop(self, link: str, now: float) -> bytes | None:
        """The next message for `link`, or None (then wait for `wake_at` or new input)."""
        lk = self._links.get(link)
        if lk is None:
            return None
        if lk.cap is not None and not lk.cap.can_send(now):
            return None
        self._trim_audio(lk, now)
        if lk.audio:
            t_in, data = lk.audio.popleft()
            if data[0] == C.KIND_CHUNK:
                lk.max_audio_wait_s = max(lk.max_audio_wait_s, now - t_in)
        elif lk.video:
            data = self._next_video(lk)
        else:
            size = lk.probe.padding_bytes(now, lk.framing_bytes) if lk.probe is not None else None
            if size is None:
                lk.drain.idle()
                return None
            data = C.encode(C.Padding(size))
        n = len(data) + lk.framing_bytes  # what the link carries
        lk.drain.sent(n, now)
        if lk.probe is not None:
            lk.probe.sent(n)
        if lk.cap is not None:
            lk.cap.sent(len(data), now)
        return data

    def _next_video(self, lk: _Link) -> bytes:
        t, data, layer, tid, piece_bytes = lk.video.popleft()
        message, rest, piece_bytes = next_piece(data, piece_bytes)
        if rest:
            lk.video.appendleft((t, rest, layer, tid, piece_bytes))
        return message

    def wake_at(self, link: str, now: float) -> float | None:
        """When `pop` may give something without new input (rate cap refill, probe pacing)."""
        lk = self._links.get(link)
        if lk is None:
            return None
        if lk.audio or lk.video:
            return lk.cap.ready_at(now) if lk.cap is not None else now
        if lk.probe is not None:
            t = lk.probe.next_padding_at(now)
            return max(t, lk.cap.ready_at(now)) if lk.cap is not None else t
        return None

    def _trim_audio(self, lk: _Link, now: float) -> None:
        while lk.audio and (now - lk.audio[0][0]) * 1000 > AUDIO_MAX_QUEUE_MS and C.peek_kind(lk.audio[0][1]) == C.KIND_CHUNK:
            lk.audio.popleft()
            lk.dropped_audio += 1

    # ---- timers: congestion, upgrades, merged keyframe requests --------------------------
    def tick(self, now: float) -> list[Outgoing]:
        """Run timers; call at `next_deadline()` (or every ~50 ms)."""
        self._rates.roll(now)
        out: list[Outgoing] = []
        for layer in self._kf.due(now):
            if self.source is not None:
                out.append(Outgoing(self.source, C.encode_keyframe_request(C.KeyframeRequest(layer))))
        for lk in self._links.values():
            out += self._judge(lk, now)
            self._audio_rate.refresh(lk.id, lk.level == AUDIO_LEVEL, now)
        return out + self._audio_rate_due(now)

    def next_deadline(self, now: float) -> float:
        t = self._kf.next_deadline()
        a = self._audio_rate.next_deadline(now)
        t = a if t is None else (t if a is None else min(t, a))
        nxt = now + 0.05
        return nxt if t is None else min(nxt, max(t, now))

    def _queue_ms(self, lk: _Link, now: float) -> float:
        heads = [q[0][0] for q in (lk.audio, lk.video) if q]
        return (now - min(heads)) * 1000 if heads else 0.0

    def _level_bps(self, lk: _Link, level: int) -> float:
        return self._rates.link_bps(level, simulcast=lk.simulcast, framing_bytes=lk.framing_bytes)

    def _fits(self, lk: _Link, level: int, est: float) -> bool:
        return self._rates.fits(level, est, simulcast=lk.simulcast, framing_bytes=lk.framing_bytes)

    def _judge(self, lk: _Link, now: float) -> list[Outgoing]:
        qms = self._queue_ms(lk, now)
        est = lk.drain.estimate(now)
        if qms <= STEADY_QUEUE_MS:
            lk.congested_since = None
        elif lk.congested_since is None:
            lk.congested_since = now - qms / 1000  # the head has waited since then
        if qms <= DOWNGRADE_QUEUE_MS:
            lk.over_since = None
        elif lk.over_since is None:
            lk.over_since = now
        if qms > DOWNGRADE_QUEUE_MS and now >= lk.hold_until and now - lk.over_since >= DOWNGRADE_CONFIRM_S:
            if lk.probe is not None:
                self._end_probe(lk, now, ok=False)
            if lk.level < AUDIO_LEVEL:
                return self._downgrade(lk, lk.drain.rate_since(lk.congested_since, now), now)
            self._squeeze_audio(lk, lk.drain.rate_since(lk.congested_since, now), now)
            return []
        if qms > STEADY_QUEUE_MS:
            lk.steady_since = now
            if lk.probe is not None:
                self._end_probe(lk, now, ok=False)
            return []
        if lk.probe is not None:
            achieved = lk.probe.achieved_bps(now)
            if achieved is not None:
                ok = lk.probe.passed(achieved)
                if ok:
                    lk.drain.estimate_bps = max(lk.drain.estimate_bps, achieved)
                    ok = self._fits(lk, lk.level - 1, lk.drain.estimate_bps / UPGRADE_HEADROOM)
                self._end_probe(lk, now, ok=ok)
                if ok:
                    return self._set_level(lk, lk.level - 1, now)
            return []
        if lk.level > lk.best_level and now - lk.steady_since >= lk.backoff_s:
            target = self._level_bps(lk, lk.level - 1)
            if target <= 0 or (LEVELS[lk.level - 1].layer is not None and target <= self._level_bps(lk, AUDIO_LEVEL)):
                return []  # no video is flowing: nothing to climb to
            if est > 0 and self._fits(lk, lk.level - 1, est):
                return self._set_level(lk, lk.level - 1, now)
            lk.probe = PaddingProbe(target / UPGRADE_HEADROOM, now)
        return []

    def _end_probe(self, lk: _Link, now: float, *, ok: bool) -> None:
        lk.probe = None
        lk.steady_since = now
        if not ok:
            lk.backoff_s = min(UPGRADE_BACKOFF_MAX_S, lk.backoff_s * 2)

    def _downgrade(self, lk: _Link, est: float, now: float) -> list[Outgoing]:
        new = lk.level + 1
        if est > 0:
            new = AUDIO_LEVEL
            for i in range(lk.level + 1, AUDIO_LEVEL):
                if self._fits(lk, i, est):
                    new = i
                    break
        if now - lk.last_change < 3 * UPGRADE_BACKOFF_MAX_S:
            lk.backoff_s = min(UPGRADE_BACKOFF_MAX_S, lk.backoff_s * 2)  # the last upgrade failed
        lk.video.clear()  # stale; the decoder restarts at a keyframe of the new layer
        # (a chunk cut mid-way is dropped by the receiver when the next first piece comes)
        lk.sending.clear()
        lk.hold_until = now + DOWNGRADE_HOLD_S
        if est > 0:
            lk.drain.estimate_bps = est
        log.debug("link %s: %s -> %s (queue, estimate %.0f bit/s)", lk.id, LEVELS[lk.level].name, LEVELS[new].name, est)
        out = self._set_level(lk, new, now)
        if new == AUDIO_LEVEL:
            self._squeeze_audio(lk, est, now)
        return out

    def _squeeze_audio(self, lk: _Link, drain_bps: float, now: float) -> None:
        """`lk` is at audio-only and congested: audio_rate.py decides whether to want less audio."""
        load = AudioLoad(self._rates.audio_bps(), self._rates.audio_messages_per_s(), lk.framing_bytes)
        self._audio_rate.squeeze(lk.id, drain_bps, load, now)

    def _set_level(self, lk: _Link, level: int, now: float) -> list[Outgoing]:
        if level < lk.level and now - lk.last_change > 10 * UPGRADE_BACKOFF_MAX_S:
            lk.backoff_s = UPGRADE_STEADY_S  # it held for long: be quick to climb again
        lk.level = level
        if level < AUDIO_LEVEL:
            self._audio_rate.video_fits(lk.id)  # audio at the source's own preset again
        lk.last_change = now
        lk.steady_since = now
        return self._request_for_level(lk, now)

    # ---- status --------------------------------------------------------------------------
    def take_max_audio_wait_ms(self, link: str) -> float:
        """The longest audio wait on `link` since the last call (then starts over)."""
        lk = self._links[link]
        w, lk.max_audio_wait_s = lk.max_audio_wait_s, 0.0
        return round(w * 1000, 1)

    def link_stats(self, link: str, now: float) -> LinkStats:
        lk = self._links[link]
        return LinkStats(link, LEVELS[lk.level].name, round(self._queue_ms(lk, now), 1),
                         round(lk.drain.estimate(now) / 1000, 1), self._audio_rate.wanted_for(link, now))

    def stats(self, now: float) -> list[LinkStats]:
        return [self.link_stats(link, now) for link in self._links]
