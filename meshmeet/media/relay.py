"""The media relay core (sans-IO): what each outgoing link gets, in which order, at which quality.

One source (the link chunks come from, or the local presenter) fans out to many links: tree
neighbours (simulcast: both video layers) and browsers (one layer). Per link: an audio queue
served before a video queue, congestion read from queue delay, the quality ladder (ladder.py),
video that (re)starts or switches layer only at a keyframe of the target layer, keyframe requests
merged and rate-limited upstream (keyframes.py), padding probes before an upgrade, and an
optional rate cap (linkmodel.py) for emulated weak links. Link rates (estimates, probes, caps,
what a level needs) count each message's framing on that link (mesh link or WebSocket).

Audio is one stream for every link (it is tiny next to video, as in SFUs): a link at the
audio-only level that still cannot carry it asks the source for a lower Opus bitrate (kind 0x06,
one of AUDIO_PRESETS_KBPS), merged per hop as the minimum over downstream and repeated while
needed; the source returns to its chosen preset when the requests stop.

Drivers call `receive()` with bytes from a link, `pop()` when a link can take a message,
`tick()` at `next_deadline()`, and send the `Outgoing` control messages they are given. This
module must never do I/O, sleep, read a clock, or raise anything but MediaFormatError for bytes.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from meshmeet.media import chunk as C
from meshmeet.media.keyframes import AUDIO_PRESETS_KBPS, AudioRateRequester, KeyframeRequester
from meshmeet.media.ladder import AUDIO_LEVEL, LEVELS, RateMeter, level_rate_bps

LOW_LEVEL = next(i for i, lv in enumerate(LEVELS) if lv.layer == C.LAYER_LOW)
from meshmeet.media.linkmodel import MESH_LINK_FRAMING_BYTES, WS_FRAMING_BYTES, RateCap

log = logging.getLogger(__name__)

DOWNGRADE_QUEUE_MS = 150.0  # a head-of-queue older than this means the link is congested...
DOWNGRADE_CONFIRM_S = 0.05  # ...when it still is this much later (a process stall drains at once)
STEADY_QUEUE_MS = 60.0  # below this the link counts as steady
AUDIO_MAX_QUEUE_MS = 500.0  # audio older than this is late for any jitter buffer: dropped
DOWNGRADE_HOLD_S = 0.3  # after a downgrade, let the queue drain before judging again
UPGRADE_STEADY_S = 1.0  # steady time before probing for the next level (first try)
UPGRADE_BACKOFF_MAX_S = 3.0  # failed probes double the wait up to this
PROBE_S = 0.6  # padding probe length
PROBE_SUCCESS_RATIO = 0.9  # achieved / target rate for a probe to pass
UPGRADE_HEADROOM = 0.85  # a level fits if its rate <= this share of the estimate
KEYFRAME_HOL_MAX_S = 0.25  # ...and its keyframe holds audio back for at most this long
ESTIMATE_WINDOW_S = 1.0
PADDING_MIN_BYTES = 64
PADDING_MAX_BYTES = 1200
PADDING_SLICE_S = 0.01  # one padding message carries this much time at the probe rate
FRAGMENT_BYTES = 700  # video chunks above this go out in pieces, audio slipping in between
FRAGMENT_PIECE_BYTES = 500  # pieces are cut evenly to at most this (62 ms at 64 kbit/s)
LAYER_FLOWING_S = 0.5  # a video layer with no frame for this long is not flowing (upstream shed it)
AUDIO_FIT_SHARE = 0.95  # at audio-only, audio (with framing) fits a link if it needs at most this share of the estimate
AUDIO_FRAMES_PER_S = 50  # 20 ms Opus frames, until the meter has counted them
AUDIO_SQUEEZE_SETTLE_S = 2.0  # after asking for less, the source has switched and the queue drained by then


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
    audio_want_kbps: int | None = None  # Opus bitrate asked of the source for this link (at audio-only)
    audio_want_at: float = 0.0
    audio: deque = field(default_factory=deque)  # (t_enqueued, bytes)
    video: deque = field(default_factory=deque)  # (t_enqueued, bytes, layer, tid, piece size once cut, else 0)
    sending: dict = field(default_factory=dict)  # layer -> decoder continuity established
    eff_tid: dict = field(default_factory=dict)  # layer -> max temporal id forwarded now
    last_change: float = 0.0
    hold_until: float = 0.0
    backoff_s: float = UPGRADE_STEADY_S
    steady_since: float = 0.0
    probe_t0: float | None = None
    probe_target_bps: float = 0.0
    probe_bytes: int = 0
    last_pop: float | None = None
    last_pop_size: int = 0
    backlog: deque = field(default_factory=deque)  # (t, bytes, seconds) while backlogged
    sent: deque = field(default_factory=deque)  # (t, bytes)
    backlog_bytes: int = 0
    backlog_secs: float = 0.0
    sent_bytes: int = 0
    estimate_bps: float = 0.0
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
        self._meter = RateMeter()
        self._msgs = RateMeter()  # messages, one "byte" each: rate_bps / 8 = messages per second
        self._kf = KeyframeRequester()
        self._ar = AudioRateRequester()
        self._key_bytes: dict[int, int] = {}  # layer -> size of its latest keyframe
        self._reassembly: dict[str, bytearray] = {}  # link -> pieces of a fragmented chunk
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
        self._reassembly.pop(link, None)
        self._ar.want(("link", link), None, 0.0)
        self._ar.want(("from", link), None, 0.0)
        if link == self.source:
            self.source = None

    def set_source(self, link: str | None) -> None:
        """The floor moved: forget the old source's configs; new chunks come from `link`."""
        self.source = link
        self._configs.clear()
        self._ar.resend()
        for lk in self._links.values():
            lk.sending.clear()
            lk.video.clear()

    def move_source(self, link: str | None) -> None:
        """The same source is now reached over another link (the tree changed): keep configs."""
        self.source = link
        self._reassembly.clear()
        self._ar.resend()

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
            whole = self._reassemble(link, data)
            if whole is None:
                return []
            data, kind = whole, C.peek_kind(whole)
            if kind != C.KIND_CHUNK:
                raise C.MediaFormatError("fragments must carry a chunk")
        if kind == C.KIND_KEYFRAME_REQUEST:
            req = C.parse(data)
            assert isinstance(req, C.KeyframeRequest)
            return self._ask_upstream(req.layer, now)
        if kind == C.KIND_AUDIO_RATE_REQUEST:
            return self._audio_rate_from(link, data, now)
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
            self._meter.add(("a",), n, now)
            self._msgs.add(("a",), 1, now)
            for lk in self._links.values():
                if lk.id != link:
                    lk.audio.append((now, data))
            return []
        self._meter.add(("v", info.layer, info.temporal_id), n, now)
        pieces = 1 if n <= FRAGMENT_BYTES else -(-n // FRAGMENT_PIECE_BYTES)
        self._msgs.add(("v", info.layer, info.temporal_id), pieces, now)
        self._layer_seen[info.layer] = now
        if info.keyframe:
            self._kf.keyframe_seen(info.layer, now)
            self._key_bytes[info.layer] = n
        out: list[Outgoing] = []
        for lk in self._links.values():
            if lk.id != link and self._offer_video(lk, info, data, now):
                out += self._ask_upstream(info.layer, now)
        return out

    def _reassemble(self, link: str, data: bytes) -> bytes | None:
        frag = C.parse(data)
        assert isinstance(frag, C.Fragment)
        buf = self._reassembly.get(link)
        if frag.first:
            buf = self._reassembly[link] = bytearray()
        elif buf is None:
            return None  # the start was lost (link restarted): drop the rest quietly
        buf += frag.piece
        if len(buf) > C.MAX_MESSAGE_BYTES:
            del self._reassembly[link]
            raise C.MediaFormatError("fragmented chunk too large")
        if not frag.last:
            return None
        del self._reassembly[link]
        return bytes(buf)

    def _flowing(self, layer: int, now: float | None) -> bool:
        seen = self._layer_seen.get(layer)
        return now is None or (seen is not None and now - seen < LAYER_FLOWING_S)

    def _wanted_layers(self, lk: _Link, now: float | None = None) -> tuple[int, ...]:
        lv = LEVELS[lk.level]
        if lv.layer is None:
            return ()
        if lk.simulcast and lv.layer == C.LAYER_HIGH:
            return (C.LAYER_HIGH, C.LAYER_LOW)
        if (lv.layer == C.LAYER_HIGH and lk.best_level <= LOW_LEVEL and now is not None
                and not self._flowing(C.LAYER_HIGH, now) and self._flowing(C.LAYER_LOW, now)):
            return (C.LAYER_LOW,)  # upstream shed the high layer: a picture beats none
        return (lv.layer,)

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

    def _audio_rate_from(self, link: str, data: bytes, now: float) -> list[Outgoing]:
        """A downstream hop wants a lower audio bitrate: merge it, pass it on if due."""
        req = C.parse(data)
        assert isinstance(req, C.AudioRateRequest)
        if link == self.source:
            return []  # requests travel away from the source only
        self._ar.want(("from", link), req.kbps, now)
        return self._audio_rate_due(now)

    def _audio_rate_due(self, now: float) -> list[Outgoing]:
        kbps = self._ar.due(now)
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
            data = self._padding(lk, now)
            if data is None:
                lk.last_pop = None  # idle: the next send does not measure capacity
                return None
        n = len(data) + lk.framing_bytes  # what the link carries
        if lk.last_pop is not None and now > lk.last_pop:
            lk.backlog.append((now, lk.last_pop_size, now - lk.last_pop))
            lk.backlog_bytes += lk.last_pop_size
            lk.backlog_secs += now - lk.last_pop
        lk.last_pop, lk.last_pop_size = now, n
        lk.sent.append((now, n))
        lk.sent_bytes += n
        if lk.probe_t0 is not None:
            lk.probe_bytes += n
        if lk.cap is not None:
            lk.cap.sent(len(data), now)
        return data

    def _next_video(self, lk: _Link) -> bytes:
        t, data, layer, tid, piece_bytes = lk.video.popleft()
        if not piece_bytes:  # not started
            if len(data) <= FRAGMENT_BYTES:
                return data
            n = -(-len(data) // FRAGMENT_PIECE_BYTES)
            piece_bytes = -(-len(data) // n)
            first = True
        else:
            first = False
        piece, rest = data[:piece_bytes], data[piece_bytes:]
        if rest:
            lk.video.appendleft((t, rest, layer, tid, piece_bytes))
        return C.encode_fragment(C.Fragment(first, not rest, piece))

    def wake_at(self, link: str, now: float) -> float | None:
        """When `pop` may give something without new input (rate cap refill, probe pacing)."""
        lk = self._links.get(link)
        if lk is None:
            return None
        if lk.audio or lk.video:
            return lk.cap.ready_at(now) if lk.cap is not None else now
        if lk.probe_t0 is not None:
            t = now + PADDING_SLICE_S
            return max(t, lk.cap.ready_at(now)) if lk.cap is not None else t
        return None

    def _padding(self, lk: _Link, now: float) -> bytes | None:
        if lk.probe_t0 is None:
            return None
        owed = lk.probe_target_bps / 8 * (now - lk.probe_t0) - lk.probe_bytes
        if owed <= 0:
            return None
        size = int(lk.probe_target_bps / 8 * PADDING_SLICE_S) - lk.framing_bytes
        size = max(PADDING_MIN_BYTES, min(PADDING_MAX_BYTES, size))
        return C.encode(C.Padding(size))

    def _trim_audio(self, lk: _Link, now: float) -> None:
        while lk.audio and (now - lk.audio[0][0]) * 1000 > AUDIO_MAX_QUEUE_MS and C.peek_kind(lk.audio[0][1]) == C.KIND_CHUNK:
            lk.audio.popleft()
            lk.dropped_audio += 1

    # ---- timers: congestion, upgrades, merged keyframe requests --------------------------
    def tick(self, now: float) -> list[Outgoing]:
        """Run timers; call at `next_deadline()` (or every ~50 ms)."""
        self._meter.roll(now)
        self._msgs.roll(now)
        out: list[Outgoing] = []
        for layer in self._kf.due(now):
            if self.source is not None:
                out.append(Outgoing(self.source, C.encode_keyframe_request(C.KeyframeRequest(layer))))
        for lk in self._links.values():
            out += self._judge(lk, now)
            want = lk.audio_want_kbps if lk.level == AUDIO_LEVEL else None
            self._ar.want(("link", lk.id), want, now)
        return out + self._audio_rate_due(now)

    def next_deadline(self, now: float) -> float:
        t = self._kf.next_deadline()
        a = self._ar.next_deadline(now)
        t = a if t is None else (t if a is None else min(t, a))
        nxt = now + 0.05
        return nxt if t is None else min(nxt, max(t, now))

    def _queue_ms(self, lk: _Link, now: float) -> float:
        heads = [q[0][0] for q in (lk.audio, lk.video) if q]
        return (now - min(heads)) * 1000 if heads else 0.0

    def _estimate(self, lk: _Link, now: float) -> float:
        while lk.backlog and now - lk.backlog[0][0] > ESTIMATE_WINDOW_S:
            _, b, sec = lk.backlog.popleft()
            lk.backlog_bytes -= b
            lk.backlog_secs -= sec
        while lk.sent and now - lk.sent[0][0] > ESTIMATE_WINDOW_S:
            lk.sent_bytes -= lk.sent.popleft()[1]
        if lk.backlog_secs >= 0.1:
            lk.estimate_bps = lk.backlog_bytes * 8 / lk.backlog_secs
        else:
            lk.estimate_bps = max(lk.estimate_bps, lk.sent_bytes * 8 / ESTIMATE_WINDOW_S)
        return lk.estimate_bps

    def _congested_estimate(self, lk: _Link, now: float) -> float:
        """Drain rate since the queue began to grow (older samples describe another link)."""
        since = lk.congested_since
        if since is None:
            return 0.0
        samples = [(b, s) for t, b, s in lk.backlog if t - s >= since - 1e-9]
        secs = sum(s for _, s in samples)
        if secs >= 0.1:
            return sum(b for b, _ in samples) * 8 / secs
        if now - since < 0.05:
            return 0.0
        # a long message is still going out: what was handed to the link since is an upper bound
        return sum(b for t, b in lk.sent if t >= since) * 8 / (now - since)

    def _level_bps(self, lk: _Link, level: int) -> float:
        """What `lk` carries at `level`: the measured media rate plus the link's framing."""
        lv = LEVELS[level]
        media = level_rate_bps(self._meter, lv, simulcast=lk.simulcast)
        return media + level_rate_bps(self._msgs, lv, simulcast=lk.simulcast) * lk.framing_bytes

    def _fits(self, lk: _Link, level: int, est: float) -> bool:
        lv = LEVELS[level]
        simulcast = lk.simulcast
        if self._level_bps(lk, level) > UPGRADE_HEADROOM * est:
            return False
        layers = () if lv.layer is None else ((C.LAYER_HIGH, C.LAYER_LOW) if simulcast and lv.layer == C.LAYER_HIGH else (lv.layer,))
        if any(self._meter.rate_bps(("v", layer, 0)) <= 0 for layer in layers):
            return False  # that layer is not flowing: it would only look like a level
        return all(self._key_bytes.get(layer, 0) * 8 / est <= KEYFRAME_HOL_MAX_S for layer in layers)

    def _judge(self, lk: _Link, now: float) -> list[Outgoing]:
        qms = self._queue_ms(lk, now)
        est = self._estimate(lk, now)
        if qms <= STEADY_QUEUE_MS:
            lk.congested_since = None
        elif lk.congested_since is None:
            lk.congested_since = now - qms / 1000  # the head has waited since then
        if qms <= DOWNGRADE_QUEUE_MS:
            lk.over_since = None
        elif lk.over_since is None:
            lk.over_since = now
        if qms > DOWNGRADE_QUEUE_MS and now >= lk.hold_until and now - lk.over_since >= DOWNGRADE_CONFIRM_S:
            if lk.probe_t0 is not None:
                self._end_probe(lk, now, ok=False)
            if lk.level < AUDIO_LEVEL:
                return self._downgrade(lk, self._congested_estimate(lk, now), now)
            self._squeeze_audio(lk, self._congested_estimate(lk, now), now)
            return []
        if qms > STEADY_QUEUE_MS:
            lk.steady_since = now
            if lk.probe_t0 is not None:
                self._end_probe(lk, now, ok=False)
            return []
        if lk.probe_t0 is not None:
            if now - lk.probe_t0 >= PROBE_S:
                achieved = lk.probe_bytes * 8 / (now - lk.probe_t0)
                ok = achieved >= PROBE_SUCCESS_RATIO * lk.probe_target_bps
                if ok:
                    lk.estimate_bps = max(lk.estimate_bps, achieved)
                    ok = self._fits(lk, lk.level - 1, lk.estimate_bps / UPGRADE_HEADROOM)
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
            lk.probe_t0, lk.probe_bytes = now, 0
            lk.probe_target_bps = target / UPGRADE_HEADROOM
        return []

    def _end_probe(self, lk: _Link, now: float, *, ok: bool) -> None:
        lk.probe_t0 = None
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
            lk.estimate_bps = est
        log.debug("link %s: %s -> %s (queue, estimate %.0f bit/s)", lk.id, LEVELS[lk.level].name, LEVELS[new].name, est)
        out = self._set_level(lk, new, now)
        if new == AUDIO_LEVEL:
            self._squeeze_audio(lk, est, now)
        return out

    def _audio_bps(self, lk: _Link, kbps: int | None) -> float:
        """Audio on `lk` with its framing: as measured (kbps None), or at that Opus bitrate."""
        frames_per_s = self._msgs.rate_bps(("a",)) / 8 or AUDIO_FRAMES_PER_S
        if kbps is None:
            return self._meter.rate_bps(("a",)) + frames_per_s * lk.framing_bytes * 8
        return kbps * 1000 + frames_per_s * (C.CHUNK_HEADER_BYTES + lk.framing_bytes) * 8

    def _squeeze_audio(self, lk: _Link, est: float, now: float) -> None:
        """At audio-only and congested: want the best preset that fits the drain rate `est`; if the
        queue is still long once the source had time to switch, one preset lower."""
        want = lk.audio_want_kbps
        if want is not None and now - lk.audio_want_at >= AUDIO_SQUEEZE_SETTLE_S:
            lower = [p for p in AUDIO_PRESETS_KBPS if p < want]
            if lower:
                lk.audio_want_kbps, lk.audio_want_at = lower[0], now
            return
        if est <= 0 or self._audio_bps(lk, None) <= AUDIO_FIT_SHARE * est:
            return  # the audio fits: the queue is a leftover of the video that was shed
        fit = next((p for p in AUDIO_PRESETS_KBPS if self._audio_bps(lk, p) <= AUDIO_FIT_SHARE * est),
                   AUDIO_PRESETS_KBPS[-1])
        if want is None or fit < want:
            log.debug("link %s: audio needs %.0f bit/s of %.0f: asking for %d kbit/s", lk.id,
                      self._audio_bps(lk, None), est, fit)
            lk.audio_want_kbps, lk.audio_want_at = fit, now

    def _set_level(self, lk: _Link, level: int, now: float) -> list[Outgoing]:
        if level < lk.level and now - lk.last_change > 10 * UPGRADE_BACKOFF_MAX_S:
            lk.backoff_s = UPGRADE_STEADY_S  # it held for long: be quick to climb again
        lk.level = level
        if level < AUDIO_LEVEL:
            lk.audio_want_kbps = None  # video fits again: audio at the source's own preset
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
                         round(self._estimate(lk, now) / 1000, 1), self._ar.wanted_for(link, now))

    def stats(self, now: float) -> list[LinkStats]:
        return [self.link_stats(link, now) for link in self._links]
