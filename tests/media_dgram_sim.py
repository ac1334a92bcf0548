"""A deterministic datagram path with receiver reports, for relay feedback tests (no clock, no I/O).

`Path` emulates one weak tree link as the relay's datagram driver would use it: every message the
relay pops goes out at once (UDP does not push back), through a bottleneck of `rate_bps` with a
drop-tail queue of `queue_s`, then `base_s` ± `jitter_s` of delay and random `loss`. The receiver
side reports every `report_s` like the datagram transport will: loss share, RFC 3550 interarrival
jitter, queueing delay (one-way delay of the latest 3 packets minus its minimum over the last 10 s) and the RTT; the
report reaches the relay one base delay later. Audio redundancy (`relay.audio_redundancy`) is
emulated RFC 2198-style: each audio packet also carries the previous `depth` audio chunks.

`SourceF` is media_sim.Source that also honours frame duration and FEC requests (kind 0x06 long
form): its audio chunks then last 40 or 60 ms.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from media_sim import AUDIO_HOLD_S, AUDIO_PRESET_KBPS, Source
from meshmeet.media import chunk as C
from meshmeet.media.relay import MediaRelay, Outgoing

DGRAM_FRAMING_BYTES = 48  # IP + UDP + a datagram header and tag (an assumption for the emulation)


class SourceF(Source):
    def __init__(self) -> None:
        super().__init__()
        self.frame_ms = 20
        self.fec = 0
        self.requests: list[tuple[float, C.AudioRateRequest]] = []
        self._pending_ms = 0
        self.emitted: list[tuple[int, float, int]] = []  # (audio seq, emitted at, duration ms)

    def request(self, req: C.AudioRateRequest) -> None:
        self.requests.append((self.t, req))
        self.rate_requests.append((self.t, req.kbps))
        self.audio_kbps = min(AUDIO_PRESET_KBPS, req.kbps)
        self.frame_ms, self.fec = req.frame_ms, req.fec_loss_percent

    def _hold(self) -> None:
        if self.requests and self.t - self.requests[-1][0] >= AUDIO_HOLD_S:
            self.audio_kbps, self.frame_ms, self.fec = AUDIO_PRESET_KBPS, 20, 0

    def audio_tick(self) -> bytes | None:
        """Called every 20 ms of capture: a chunk when a whole frame is ready."""
        self._hold()
        self._pending_ms += 20
        if self._pending_ms < self.frame_ms:
            return None
        dur, self._pending_ms = self._pending_ms, 0
        payload = bytes(self.audio_kbps * 1000 // 8 * dur // 1000)
        c = C.Chunk(C.TRACK_AUDIO, 0, 0, True, 0, self.aseq, round(self.t * 1e6), dur * 1000, payload)
        self.emitted.append((self.aseq, self.t, dur))
        self.aseq += 1
        return C.encode(c)


@dataclass
class Path:
    rate_bps: float
    base_s: float
    jitter_s: float = 0.0
    loss: float = 0.0
    queue_s: float = 1.0
    report_s: float = 0.25
    seed: int = 1
    rng: random.Random = field(init=False)
    busy_until: float = 0.0
    sent: int = 0
    inflight: list = field(default_factory=list)  # (arrival, send time, data, index)
    arrived: list = field(default_factory=list)  # (arrival, send time, data) in arrival order
    _next_report: float = 0.0
    _window: list = field(default_factory=list)  # (arrival, send time) delivered since the last report
    _max_index: int = -1  # highest packet index received (packets are numbered as sent)
    _reported_index: int = -1
    _min_delays: deque = field(default_factory=deque)  # (t, one-way delay)
    _jitter: float = 0.0
    _prev_transit: float | None = None
    pending_reports: list = field(default_factory=list)  # (deliver at, args)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def send(self, t: float, parts: tuple[bytes, ...], framing: int = DGRAM_FRAMING_BYTES) -> None:
        """One datagram: a message and (audio redundancy) copies of earlier ones, 2 B length each."""
        index = self.sent
        self.sent += 1
        start = max(t, self.busy_until)
        if start - t > self.queue_s:
            return  # drop-tail
        size = sum(len(p) for p in parts) + 2 * (len(parts) - 1) + framing
        self.busy_until = start + size * 8 / self.rate_bps
        if self.rng.random() < self.loss:
            return
        arrival = self.busy_until + self.base_s + self.rng.uniform(-self.jitter_s, self.jitter_s)
        self.inflight.append((arrival, t, parts, index))

    def advance(self, t: float) -> None:
        """Deliver what has arrived by t; make a report every report_s (delivered one base delay later)."""
        due = sorted((p for p in self.inflight if p[0] <= t), key=lambda p: p[0])
        self.inflight = [p for p in self.inflight if p[0] > t]
        for arrival, sent_at, data, index in due:
            self.arrived.append((arrival, sent_at, data))
            self._window.append((arrival, sent_at))
            self._max_index = max(self._max_index, index)
            transit = arrival - sent_at
            if self._prev_transit is not None:
                self._jitter += (abs(transit - self._prev_transit) - self._jitter) / 16
            self._prev_transit = transit
            self._min_delays.append((arrival, transit))
        while self._min_delays and t - self._min_delays[0][0] > 10.0:
            self._min_delays.popleft()
        if t >= self._next_report:
            self._next_report = t + self.report_s
            if self._window and self._min_delays:
                lowest = min(d for _, d in self._min_delays)
                last = [a - s for a, s in sorted(self._window)[-3:]]  # "current": the latest few packets
                trend = sum(last) / len(last) - lowest
                expected = self._max_index - self._reported_index
                lost = max(0.0, 1 - len(self._window) / max(1, expected))
                self._reported_index = self._max_index
                self.pending_reports.append((t + self.base_s, (lost, self._jitter, max(0.0, trend), 2 * self.base_s)))
            self._window = []


def route(outs: list[Outgoing], src: SourceF) -> None:
    for o in outs:
        req = C.parse(o.data)
        if isinstance(req, C.AudioRateRequest):
            src.request(req)
        elif isinstance(req, C.KeyframeRequest):
            src.force_key.add(req.layer)


def run(relay: MediaRelay, src: SourceF, link: str, path: Path, t0: float, t1: float, *,
        step: float = 0.005, on_step=None, redundancy: bool = True) -> None:
    """Source -> relay -> datagram `path` (all popped at once) -> reports back to the relay."""
    recent_audio: deque = deque(maxlen=2)
    for n in range(round(t0 / step), round(t1 / step)):
        t = n * step
        src.t = t
        msgs: list[bytes] = []
        if n % round(0.02 / step) == 0:
            a = src.audio_tick()
            if a is not None:
                msgs.append(a)
        if n % round(0.05 / step) == 0:
            msgs += src.video()
        for m in msgs:
            route(relay.receive("src", m, t), src)
        route(relay.tick(t), src)
        while (d := relay.pop(link, t)) is not None:
            if d[0] == C.KIND_CHUNK and d[1] >> 6 == C.TRACK_AUDIO:
                depth = relay.audio_redundancy(link, t) if redundancy else 0
                copies = tuple(recent_audio)[-depth:] if depth else ()
                path.send(t, (d, *copies))
                recent_audio.append(d)
            else:
                path.send(t, (d,))
        path.advance(t)
        for at, args in [r for r in path.pending_reports if r[0] <= t]:
            relay.link_feedback(link, t, *args)
        path.pending_reports = [r for r in path.pending_reports if r[0] > t]
        if on_step is not None:
            on_step(t)


def audio_heard(path: Path) -> dict[int, float]:
    """Audio seq -> earliest arrival, counting redundant copies carried in later packets."""
    heard: dict[int, float] = {}
    for arrival, _, parts in path.arrived:
        for data in parts:
            if data[0] == C.KIND_CHUNK and data[1] >> 6 == C.TRACK_AUDIO:
                seq = int.from_bytes(data[3:7], "big")
                heard.setdefault(seq, arrival)
    return heard


def audio_delays(src: SourceF, path: Path, t_from: float, t_to: float) -> list[tuple[float, float | None]]:
    """(media seconds, delay above the base or None if never heard) per audio chunk emitted in [t_from, t_to)."""
    heard = audio_heard(path)
    out = []
    for seq, at, dur in src.emitted:
        if t_from <= at < t_to:
            arr = heard.get(seq)
            out.append((dur / 1000, None if arr is None else arr - at - path.base_s))
    return out


def share_within(delays: list[tuple[float, float | None]], limit_s: float) -> float:
    total = sum(d for d, _ in delays)
    ok = sum(d for d, x in delays if x is not None and x <= limit_s)
    return ok / total if total else 0.0
