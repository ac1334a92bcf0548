"""The media relay core (sans-IO): what each outgoing link gets, in which order, at which quality.

One source (the link chunks come from, or the local presenter) fans out to many links: tree
neighbours (simulcast: both video layers) and browsers (one layer). This module coordinates, per
link: an audio queue served before a video queue, congestion read from queue delay, moves along
the quality ladder, and video that (re)starts or switches layer only at a keyframe of the target
layer. The parts it owns and calls, one idea each:

  relay_link.py      the per-link records (queues, level, estimates) and the status line
  relay_judge.py     congestion from queue age, the audio deadline, ladder moves, probes (mixed in)
  relay_feedback.py  what a datagram link's receiver reports decide: shedding within ~1 s, pacing,
                     flushing a late path, the audio plan, FEC, redundancy depth (mixed in)
  relay_voices.py    voices 1 and 2 with their own sources (mixed in)
  ladder.py, keyframes.py, audio_rate.py (kind 0x06 requests for less audio), drain.py,
  feedback.py, player_report.py (a browser's lag counts as queue delay), probe.py, fragments.py
  (big video chunks cut so audio slips in between), linkmodel.py (framing, emulated rate caps)

Link rates (estimates, probes, caps, what a level needs) count each message's framing on that
link (mesh link or WebSocket).

Audio deadline: an audio chunk that waited in a link's queue longer than `audio_deadline_s`
(the playout budget) is dropped and counted, never sent late. The time a driver ran late (its
process busy or descheduled: `process_stalled`) is not the link's and does not count.

Drivers call `receive()` with bytes from a link, `pop()` when a link can take a message,
`tick()` at `next_deadline()` (50 ms; 1 s while `quiet()`), and send the `Outgoing` control
messages they are given (a quiet relay that gets input is ticked at once); a datagram driver
also calls `link_feedback()` with each receiver report (decisions follow at the next `tick()`).
This module must never do I/O, sleep, read a clock, or raise anything but MediaFormatError for bytes.
"""

from __future__ import annotations

import logging
from collections import deque

from meshmeet.media import chunk as C
from meshmeet.media.audio_rate import AudioRateControl, AudioWant
from meshmeet.media.fragments import Reassembly, next_piece, piece_count
from meshmeet.media.keyframes import KeyframeRequester
from meshmeet.media.ladder import AUDIO_LEVEL, LEVELS, LOW_LEVEL, StreamRates, level_layers
from meshmeet.media.linkmodel import MESH_LINK_FRAMING_BYTES, WS_FRAMING_BYTES, RateCap
from meshmeet.media.relay_feedback import FeedbackRules
from meshmeet.media.relay_judge import QueueRules
from meshmeet.media.relay_link import LinkStats, Outgoing, RelayLink, queue_config
from meshmeet.media.relay_voices import VoiceRules, is_extra_voice

log = logging.getLogger(__name__)

AUDIO_DEADLINE_S = 0.25  # default playout budget: audio that waited longer in a queue is dropped
RECENT_AUDIO_CHUNKS = 64  # audio chunks remembered to drop repeats (redundant copies): > 2 copies x reordering
LAYER_FLOWING_S = 0.5  # a video layer with no frame for this long is not flowing (upstream shed it)
# timers' period; while quiet() (rates roll once per RATE_WINDOW_S = 1 s either way); quiet: no bytes from a link this long
TICK_S, QUIET_TICK_S, QUIET_AFTER_S = 0.05, 1.0, 5.0


class MediaRelay(QueueRules, FeedbackRules, VoiceRules):
    """See the module docstring. `source` is the link chunks arrive on (None: taken from the first).
    Voices 1 and 2 (relay_voices.py) have their own sources, or follow `source` (a hub)."""

    def __init__(self, *, source: str | None = None, keep_accepted: bool = False,
                 audio_deadline_s: float = AUDIO_DEADLINE_S, voices_follow_source: bool = False) -> None:
        self.source = source
        self._init_voices(voices_follow_source)
        self.audio_deadline_s = audio_deadline_s
        self.feedback_refused = 0  # receiver reports with values out of range (not counted otherwise)
        # whole messages from the source for the driver's own browsers (take_accepted); None: not wanted
        self._accepted: list[bytes] | None = [] if keep_accepted else None
        self._layer_seen: dict[int, float] = {}  # video layer -> last time a frame of it arrived
        self._links: dict[str, RelayLink] = {}
        self._configs: dict[tuple[int, int], bytes] = {}
        self._rates = StreamRates()
        self._kf = KeyframeRequester()
        self._audio_rate = AudioRateControl()
        self._reassembly = Reassembly()  # pieces of fragmented chunks, per link
        self.chunks_in = 0
        self.format_errors = 0
        self.audio_repeats = 0  # audio chunks that arrived again (redundancy copies) and were dropped
        self._recent_audio: deque = deque(maxlen=RECENT_AUDIO_CHUNKS)  # (seq, timestamp) relayed lately
        self._input_at = float("-inf")  # when bytes last came from a link (quiet())

    # ---- links -------------------------------------------------------------------------
    def add_link(self, link: str, now: float, *, simulcast: bool = False, start_level: int = 0,
                 best_level: int = 0, framing_bytes: int | None = None, voices: bool = False) -> list[Outgoing]:
        """A new downstream link (tree neighbour: simulcast=True; browser: False).

        `framing_bytes`: what the link adds per message; by default a mesh link's for a tree
        neighbour (simulcast) and a WebSocket's for a browser."""
        start_level = max(start_level, best_level)
        if framing_bytes is None:
            framing_bytes = MESH_LINK_FRAMING_BYTES if simulcast else WS_FRAMING_BYTES
        lk = RelayLink(link, simulcast, start_level, best_level, last_change=now, steady_since=now,
                   framing_bytes=framing_bytes, voices=voices)
        self._links[link] = lk
        for key in sorted(self._configs):  # late joiner: decoder configs first
            queue_config(lk, key, self._configs[key], now)
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
            lk.configs_sent.clear()  # every node forgot the old source's configs: the new ones go out

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

    def configs(self) -> list[bytes]:
        """Every decoder config held now (the source's, then voices 1 and 2'): what a late browser needs."""
        return [self._configs[k] for k in sorted(self._configs)] + [self._voice_configs[v] for v in sorted(self._voice_configs)]

    def set_rate_cap(self, link: str, rate_bps: float | None) -> None:
        """Emulate (or pace) a link at `rate_bps`; None lifts the cap."""
        lk = self._links[link]
        lk.cap = None if rate_bps is None else RateCap(rate_bps, lk.framing_bytes)

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
        self._input_at = now
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
                    queue_config(lk, (cfg.track, cfg.layer), data, now)
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

    def _wanted_layers(self, lk: RelayLink, now: float | None = None) -> tuple[int, ...]:
        layers = level_layers(LEVELS[lk.level], simulcast=lk.simulcast)
        if (layers == (C.LAYER_HIGH,) and lk.best_level <= LOW_LEVEL and now is not None
                and not self._flowing(C.LAYER_HIGH, now) and self._flowing(C.LAYER_LOW, now)):
            return (C.LAYER_LOW,)  # a browser's high layer was shed upstream: a picture beats none
        return layers

    def _offer_video(self, lk: RelayLink, info: C.ChunkInfo, data: bytes, now: float) -> bool:
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

    def _request_for_level(self, lk: RelayLink, now: float) -> list[Outgoing]:
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

    def _next_video(self, lk: RelayLink) -> bytes:
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

    def quiet(self, now: float) -> bool:
        """Nothing came from any link for QUIET_AFTER_S, nothing waits or probes (timers: QUIET_TICK_S)."""
        return now - self._input_at >= QUIET_AFTER_S and not any(
            lk.audio or lk.video or lk.probe is not None for lk in self._links.values())

    def next_deadline(self, now: float) -> float:
        t = self._kf.next_deadline()
        a = self._audio_rate.next_deadline(now)
        t = a if t is None else (t if a is None else min(t, a))
        nxt = now + (QUIET_TICK_S if self.quiet(now) else TICK_S)
        return nxt if t is None else min(nxt, max(t, now))

    # ---- status --------------------------------------------------------------------------
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
