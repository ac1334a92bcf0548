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
                 this hop ask the source for a lower Opus preset (and, on datagram links, longer
                 frames; in-band FEC where packets are lost); this module sends what it says
  drain.py       each link's drain estimate
  feedback.py    a datagram link's rate estimate from its receiver reports (`link_feedback`)
  relay_feedback.py  what those reports decide for their link (mixed into MediaRelay): the ladder
                 (overuse or heavy loss sheds video within ~1 s), pacing, flushing a late path,
                 the audio plan, FEC and the redundancy depth (`audio_redundancy`)
  player_report.py  what a browser player reports back (`player_report`): its lag behind what
                 was handed to its socket counts as queue delay (a stalled player is shed)
  probe.py       padding probes before an upgrade
  fragments.py   big video chunks cut into pieces on a link (audio slips in between), joined on arrival
  linkmodel.py   per-message framing, and an optional rate cap for emulated weak links

Link rates (estimates, probes, caps, what a level needs) count each message's framing on that
link (mesh link or WebSocket).

Audio deadline: an audio chunk that waited in a link's queue longer than `audio_deadline_s`
(the playout budget) is dropped and counted, never sent late. The time a driver ran late (its
process busy or descheduled: `process_stalled`) is not the link's and does not count.

Drivers call `receive()` with bytes from a link, `pop()` when a link can take a message,
`tick()` at `next_deadline()`, and send the `Outgoing` control messages they are given; a datagram
driver also calls `link_feedback()` with each receiver report (decisions follow at the next
`tick()`). This module must never do I/O, sleep, read a clock, or raise anything but
MediaFormatError for bytes.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from meshmeet.media import chunk as C
from meshmeet.media.audio_rate import AudioLoad, AudioRateControl, AudioWant, fec_percent, plan_audio
from meshmeet.media.drain import DrainEstimate
from meshmeet.media.feedback import LinkFeedback
from meshmeet.media.fragments import Reassembly, next_piece, piece_count
from meshmeet.media.keyframes import KeyframeRequester
from meshmeet.media.ladder import KEYFRAME_HOL_MAX_S, AUDIO_LEVEL, LEVELS, LOW_LEVEL, UPGRADE_HEADROOM, StreamRates, level_layers
from meshmeet.media.linkmodel import MESH_LINK_FRAMING_BYTES, WS_FRAMING_BYTES, RateCap
from meshmeet.media.player_report import PlayerLag
from meshmeet.media.relay_feedback import FEEDBACK_BACKOFF_MAX_S, FEEDBACK_PROBE_FACTOR, FeedbackRules
from meshmeet.media.relay_voices import VoiceRules, is_extra_voice
from meshmeet.media.probe import PROBE_S, PaddingProbe

log = logging.getLogger(__name__)

DOWNGRADE_QUEUE_MS = 150.0  # a head-of-queue older than this means the link is congested...
DOWNGRADE_CONFIRM_S = 0.05  # ...when it still is this much later (a process stall drains at once)
STEADY_QUEUE_MS = 60.0  # below this the link counts as steady
AUDIO_DEADLINE_S = 0.25  # default playout budget: audio that waited longer in a queue is dropped
URGENT_QUEUE_SHARE = 0.6  # audio-only and queued this share of the budget: ask for less audio sooner
RECENT_AUDIO_CHUNKS = 64  # audio chunks remembered to drop repeats (redundant copies): > 2 copies x reordering
DOWNGRADE_HOLD_S = 0.3  # after a downgrade, let the queue drain before judging again
UPGRADE_STEADY_S = 1.0  # steady time before probing for the next level (first try)
UPGRADE_BACKOFF_MAX_S = 3.0  # failed probes double the wait up to this (datagram links: relay_feedback.py)
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
    audio_frame_ms: int | None = None  # the longer Opus frames asked for because of it (None: 20 ms)
    audio_fec_percent: int = 0  # the in-band FEC asked for because of it (packet loss %, 0: none)
    audio_late_dropped: int = 0  # audio chunks dropped here for waiting past the playout budget
    feedback: bool = False  # receiver reports drive this link now (datagram link)
    loss: float = 0.0  # smoothed loss those reports give
    redundancy: int = 0  # earlier audio frames a datagram link repeats in each packet
    player_lag_ms: float = 0.0  # a browser player's lag behind what it was sent (beyond the slack)


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
    dropped_audio: int = 0  # late audio dropped (the audio deadline)
    feedback: LinkFeedback | None = None  # receiver reports (datagram links)
    player: PlayerLag = field(default_factory=PlayerLag)  # browser player reports
    probe_factor: float = FEEDBACK_PROBE_FACTOR[0]  # datagram links: next probe's multiple of the estimate
    probe_from_bps: float = 0.0  # datagram links: the estimate when the running probe started
    pacer: RateCap | None = None  # paces a datagram link at its feedback estimate
    flush_until: float = 0.0  # the path's own queue is late: media for it dropped until then
    flush_blocked_until: float = 0.0  # reports until then still describe what was sent before the flush
    max_audio_wait_s: float = 0.0  # longest an audio chunk waited here (diagnostics; reset by caller)
    young_carried_bps: float = 0.0  # a young datagram link: the most a clean probe of it carried
    media_since: float | None = None  # the first audio chunk sent on it (a young datagram link's probe and copies wait)
    path_rtt_s: float | None = None  # the path's lowest round trip as the driver's kernel measured it (TCP_INFO)
    voices: bool = False  # the peer takes voices 1 and 2 (relay_voices.py)


class MediaRelay(FeedbackRules, VoiceRules):
    """See the module docstring. `source` is the link chunks arrive on (None: taken from the first).
    Voices 1 and 2 (relay_voices.py) have their own sources, or follow `source` (a hub)."""

    def __init__(self, *, source: str | None = None, keep_accepted: bool = False,
                 audio_deadline_s: float = AUDIO_DEADLINE_S, voices_follow_source: bool = False) -> None:
        self.source = source
        self._init_voices(voices_follow_source)
        self.audio_deadline_s = audio_deadline_s
        self.feedback_refused = 0  # receiver reports with values out of range (not counted otherwise)
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
        self.audio_repeats = 0  # audio chunks that arrived again (redundancy copies) and were dropped
        self._recent_audio: deque = deque(maxlen=RECENT_AUDIO_CHUNKS)  # (seq, timestamp) relayed lately

    # ---- links -------------------------------------------------------------------------
    def add_link(self, link: str, now: float, *, simulcast: bool = False, start_level: int = 0,
                 best_level: int = 0, framing_bytes: int | None = None, voices: bool = False) -> list[Outgoing]:
        """A new downstream link (tree neighbour: simulcast=True; browser: False).

        `framing_bytes`: what the link adds per message; by default a mesh link's for a tree
        neighbour (simulcast) and a WebSocket's for a browser."""
        start_level = max(start_level, best_level)
        if framing_bytes is None:
            framing_bytes = MESH_LINK_FRAMING_BYTES if simulcast else WS_FRAMING_BYTES
        lk = _Link(link, simulcast, start_level, best_level, last_change=now, steady_since=now,
                   framing_bytes=framing_bytes, voices=voices)
        self._links[link] = lk
        for key in sorted(self._configs):  # late joiner: decoder configs first
            lk.audio.append((now, self._configs[key]))
        self._late_voice_configs(lk, now)
        return self._request_for_level(lk, now)

    def remove_link(self, link: str) -> None:
        self._links.pop(link, None)
        self._reassembly.forget(link)
        self._audio_rate.remove_link(link)
        if link == self.source:
            self.source = None
        for voice in [v for v, src in self._voice_src.items() if src == link]:
            self.set_voice_source(voice, None)

    def _repeated_audio(self, data: bytes) -> bool:
        """Whether this audio chunk (sequence and timestamp) was relayed lately; remembers it if not."""
        key = (data[1], data[3:7], data[7:12])  # per voice
        if key in self._recent_audio:
            return True
        self._recent_audio.append(key)
        return False

    def set_source(self, link: str | None) -> None:
        """The floor moved: forget the old source's configs; new chunks come from `link`."""
        self.source = link
        self._configs.clear()
        self._recent_audio.clear()
        self._audio_rate.source_changed()
        for lk in self._links.values():
            lk.sending.clear()
            lk.video.clear()

    def move_source(self, link: str | None) -> None:
        """The same source is now reached over another link (the tree changed): keep configs."""
        self.source = link
        self._reassembly.clear()
        self._audio_rate.source_changed()

    def source_reconnected(self) -> None:
        """The source (a presenter page) has (re)connected: what downstream wants of its audio is
        asked of it again at once (a request sent while no page listened was lost)."""
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

    def set_path_rtt(self, link: str, rtt_s: float | None) -> None:
        """The driver's lowest round trip for `link`'s path (the kernel's TCP min RTT), or None."""
        lk = self._links.get(link)
        if lk is not None:
            lk.path_rtt_s = rtt_s

    def set_link_framing(self, link: str, framing_bytes: int) -> None:
        """What `link` adds per message (a datagram link's headers): counted in all its rates."""
        lk = self._links.get(link)
        if lk is not None and 0 <= framing_bytes <= 1500:
            lk.framing_bytes = framing_bytes

    def links(self) -> list[str]:
        return list(self._links)

    # ---- receiver feedback ---------------------------------------------------------------
    def player_report(self, link: str, now: float, audio_ts_us: int | None) -> None:
        """A browser player on `link` reports the capture timestamp of its latest decoded audio
        frame (player_report.py checked it)."""
        lk = self._links.get(link)
        if lk is not None:
            lk.player.report(now, audio_ts_us)

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
            self._audio_rate.requested(link, AudioWant(req.kbps, req.frame_ms, req.fec_loss_percent), now)
            return self._audio_rate_due(now)
        if is_extra_voice(data):
            return self._receive_voice(link, data, data[1] >> 4 & 3, now)
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
        if info.track == C.TRACK_AUDIO and self._repeated_audio(data):
            self.audio_repeats += 1  # a redundant copy (datagram links) of a chunk already relayed
            return []
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
        want = self._audio_rate.due(now)
        if want is None or self.source is None:
            return []
        req = C.AudioRateRequest(want.kbps, want.frame_ms, want.fec_loss_percent)
        return [Outgoing(self.source, C.encode_audio_rate_request(req))]

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
        pacer = self._pacer(lk, now)
        self._trim_audio(lk, now)
        if now < lk.flush_until:
            self._flush(lk)
        if lk.audio:
            t_in, data = lk.audio.popleft()
            if data[0] == C.KIND_CHUNK:
                lk.max_audio_wait_s = max(lk.max_audio_wait_s, now - t_in)
                if not data[1] & 0x30:  # voice 0: the player reports the timestamps of that one
                    lk.player.sent(data)
                if lk.media_since is None:
                    lk.media_since = now
        elif pacer is not None and not pacer.can_send(now):
            return None  # audio is never paced (it is small, and late is lost); video and padding are
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
        if pacer is not None:
            pacer.sent(len(data), now)
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
        if lk.audio:
            return lk.cap.ready_at(now) if lk.cap is not None else now
        ready = max([now] + [b.ready_at(now) for b in (lk.cap, self._pacer(lk, now)) if b is not None])
        if lk.video:
            return ready
        if lk.probe is not None:
            return max(lk.probe.next_padding_at(now), ready)
        return None

    def process_stalled(self, since: float, now: float) -> None:
        """The driver was due at `since` and runs only at `now`: audio queued since then waited
        for it, not for its link (whatever was queued before keeps its time), and counts from now."""
        for lk in self._links.values():
            i = len(lk.audio)
            while i and lk.audio[i - 1][0] >= since:
                i -= 1
                lk.audio[i] = (now, lk.audio[i][1])

    def _trim_audio(self, lk: _Link, now: float) -> None:
        """The audio deadline: chunks older than the playout budget are dropped (configs stay)."""
        kept = []
        while lk.audio and now - lk.audio[0][0] > self.audio_deadline_s:
            item = lk.audio.popleft()
            if item[1][0] == C.KIND_CHUNK:
                lk.dropped_audio += 1
            else:
                kept.append(item)
        lk.audio.extendleft(reversed(kept))

    # ---- timers: congestion, upgrades, merged keyframe requests --------------------------
    def tick(self, now: float) -> list[Outgoing]:
        """Run timers; call at `next_deadline()` (or every ~50 ms)."""
        self._rates.roll(now)
        out: list[Outgoing] = []
        for layer in self._kf.due(now):
            if self.source is not None:
                out.append(Outgoing(self.source, C.encode_keyframe_request(C.KeyframeRequest(layer))))
        for lk in self._links.values():
            self._trim_audio(lk, now)
            out += self._judge(lk, now)
            if lk.id == self.source:
                # the source's own link carries this hop's media the other way: it asks nothing of
                # the source (a young one at 'audio-only' asked for 40 ms frames for every hall)
                self._audio_rate.set_fec(lk.id, 0)
                self._audio_rate.refresh(lk.id, False, now)
            else:
                self._audio_rate.refresh(lk.id, lk.level == AUDIO_LEVEL, now, young=self._young(lk, now))
        return out + self._audio_rate_due(now)

    def next_deadline(self, now: float) -> float:
        t = self._kf.next_deadline()
        a = self._audio_rate.next_deadline(now)
        t = a if t is None else (t if a is None else min(t, a))
        nxt = now + 0.05
        return nxt if t is None else min(nxt, max(t, now))

    def _queue_ms(self, lk: _Link, now: float) -> float:
        """Queue delay: the oldest queued message's age, or a browser player's lag if longer. A
        paced datagram link allows its video a keyframe's wait (the pacer, not congestion)."""
        heads = [q[0][0] for q in (lk.audio, lk.video) if q]
        if lk.pacer is not None and lk.video:
            heads = [t for t in (lk.audio[0][0] if lk.audio else None,
                                 lk.video[0][0] + KEYFRAME_HOL_MAX_S) if t is not None]
        queued = max(0.0, (now - min(heads)) * 1000) if heads else 0.0
        return max(queued, lk.player.lag_s(now) * 1000)

    def _audio_load(self, lk: _Link) -> AudioLoad:
        return AudioLoad(self._rates.audio_bps(), self._rates.audio_messages_per_s(), lk.framing_bytes)

    def _level_bps(self, lk: _Link, level: int) -> float:
        return self._rates.link_bps(level, simulcast=lk.simulcast, framing_bytes=lk.framing_bytes)

    def _fits(self, lk: _Link, level: int, est: float) -> bool:
        return self._rates.fits(level, est, simulcast=lk.simulcast, framing_bytes=lk.framing_bytes)

    def _judge(self, lk: _Link, now: float) -> list[Outgoing]:
        fb = self._active_feedback(lk, now)
        if fb is not None and self._young_wide_area(lk, fb):
            # before its first audio: a datagram link of unknown room beyond a LAN starts at
            # audio-only and climbs as its reports allow (a narrow path, profile E, would otherwise
            # start with a flood of video in its modem queue)
            return self._set_level(lk, AUDIO_LEVEL, now)
        self._audio_rate.set_fec(lk.id, fec_percent(fb.loss) if fb is not None else 0)
        fb_est = fb.estimate_bps if fb is not None else None
        if fb is not None and fb_est is not None:
            acted = self._judge_feedback(lk, fb, now)
            fb_est = self._video_estimate(fb)
            if acted is not None:
                return acted
        qms = self._queue_ms(lk, now)
        est = lk.drain.estimate(now) if fb_est is None else fb_est
        if fb is not None and fb_est is None:
            # a datagram link whose reports gave no estimate yet: UDP takes whatever is sent, so
            # what the relay sent says nothing of the path (it once 'passed' a 358 kbit/s probe on
            # 32 kbit/s); only a probe that reports saw clean climbs it (`_young_probe_done`)
            est = 0.0
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
            self._squeeze_audio(lk, lk.drain.rate_since(lk.congested_since, now), now,
                                urgent=qms > URGENT_QUEUE_SHARE * self.audio_deadline_s * 1000)
            return []
        if qms > STEADY_QUEUE_MS:
            lk.steady_since = now
            if lk.probe is not None:
                self._end_probe(lk, now, ok=False)
            return []
        if lk.probe is not None:
            achieved = lk.probe.achieved_bps(now)
            if achieved is not None and fb is not None and fb_est is None:
                return self._young_probe_done(lk, fb, achieved, now)
            if achieved is not None and fb is not None and fb_est is not None:
                # padding has stopped; a report about packets sent at the probe's end decides
                if fb.last_report_at is not None and fb.last_report_at >= lk.probe.started_at + PROBE_S + fb.rtt_s:
                    return self._feedback_probe_done(lk, fb, achieved, now)
                return []  # wait for a report that saw the probe
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
            probe_bps = target / UPGRADE_HEADROOM
            if fb is not None and fb.estimate_bps is None:
                if not self._young_may_probe(lk, now):
                    return []  # let the audio show a path narrower than itself first
                probe_bps = self._young_probe_bps(lk, probe_bps, now)
            if fb is not None and fb.estimate_bps is not None:
                # a datagram link: room for its audio redundancy too; in steps (a queue beyond costs audio delay)
                probe_bps = self._feedback_probe_bps(lk, fb, fb_est, probe_bps)
            lk.probe = PaddingProbe(probe_bps, now)
        return []

    def _backoff_max(self, lk: _Link, now: float) -> float:
        """Datagram links whose reports gave an estimate back off longer (their probes fill the path)."""
        fb = self._active_feedback(lk, now)
        return FEEDBACK_BACKOFF_MAX_S if fb is not None and fb.estimate_bps is not None else UPGRADE_BACKOFF_MAX_S

    def _end_probe(self, lk: _Link, now: float, *, ok: bool) -> None:
        lk.probe = None
        lk.steady_since = now
        if not ok:
            lk.backoff_s = min(self._backoff_max(lk, now), lk.backoff_s * 2)

    def _downgrade(self, lk: _Link, est: float, now: float) -> list[Outgoing]:
        new = lk.level + 1
        if est > 0:
            new = AUDIO_LEVEL
            for i in range(lk.level + 1, AUDIO_LEVEL):
                if self._fits(lk, i, est):
                    new = i
                    break
        if now - lk.last_change < 3 * UPGRADE_BACKOFF_MAX_S:
            lk.backoff_s = min(self._backoff_max(lk, now), lk.backoff_s * 2)  # the last upgrade failed
        lk.video.clear()  # stale; the decoder restarts at a keyframe of the new layer
        # (a chunk cut mid-way is dropped by the receiver when the next first piece comes)
        lk.sending.clear()
        lk.hold_until = now + DOWNGRADE_HOLD_S
        if est > 0:
            lk.drain.estimate_bps = est
        log.debug("link %s: %s -> %s (queue, estimate %.0f bit/s)", lk.id, LEVELS[lk.level].name, LEVELS[new].name, est)
        out = self._set_level(lk, new, now)
        if new == AUDIO_LEVEL:
            if self._active_feedback(lk, now) is not None and est > 0:
                self._audio_rate.plan(lk.id, plan_audio(est, self._audio_load(lk)))
            else:
                self._squeeze_audio(lk, est, now)
        return out

    def _squeeze_audio(self, lk: _Link, drain_bps: float, now: float, *, urgent: bool = False) -> None:
        """`lk` is at audio-only and congested: audio_rate.py decides whether to want less audio."""
        self._audio_rate.squeeze(lk.id, drain_bps, self._audio_load(lk), now, urgent=urgent)

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
        fb = self._active_feedback(lk, now)
        est = lk.drain.estimate(now)
        if fb is not None and fb.estimate_bps is not None:
            est = fb.estimate_bps
        want = self._audio_rate.wanted_for(link, now) or AudioWant()
        return LinkStats(link, LEVELS[lk.level].name, round(self._queue_ms(lk, now), 1), round(est / 1000, 1),
                         want.kbps if want.kbps < AudioWant().kbps else None,
                         want.frame_ms if want.frame_ms != AudioWant().frame_ms else None,
                         want.fec_loss_percent, lk.dropped_audio, fb is not None,
                         round(fb.loss, 4) if fb is not None else 0.0, self.audio_redundancy(link, now),
                         round(lk.player.lag_s(now) * 1000, 1))

    def stats(self, now: float) -> list[LinkStats]:
        return [self.link_stats(link, now) for link in self._links]
