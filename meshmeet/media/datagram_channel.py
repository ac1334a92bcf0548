"""One link's media datagram channel (sans-IO): what to send as datagrams, what arrived, which transport.

Built once both sides of an established link have exchanged offers (meshmeet/media/datagram.py).
Sending: audio chunks go one per datagram carrying up to `redundancy` earlier chunks; video chunks
(the relay's link fragments joined back first) go in pieces of at most one MTU-safe datagram;
decoder configs go over the TCP link and, when they fit one datagram, as a datagram too (so they
arrive before the chunks that need them); anything that does not fit 255 pieces goes over the TCP
link (`send_media` returns False). Receiving: audio is deduplicated (the last AUDIO_DEDUP_CHUNKS
chunks) and earlier chunks recovered from redundancy are delivered before the primary; video goes
through meshmeet/media/datagram_video.py (pieces, NACKs, frames in order; a frame not repaired in
time is lost, its layer waits for a keyframe and a KeyframeWanted event asks the driver for one
upstream). Transport: probes go out until the peer acknowledges one, then the channel is in
"datagram" mode; no acknowledgement or report for FALLBACK_S puts it back to "tcp" (probing goes
on). The receiver reports every REPORT_S.

This module must never do I/O, read a clock, decide media quality, or raise anything but
DatagramError for bytes (the driver counts and drops them).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from . import chunk as C
from . import datagram as D
from . import datagram_bodies as B
from .datagram_stats import Feedback, ReceiverStats, SenderView, us
from .datagram_video import (Deliver, KeyframeWanted, Nack, VideoReceiver, VideoSender, decode_nacks, encode_nacks,
                             split_nacks)
from .fragments import Reassembly

TCP = "tcp"
DATAGRAM = "datagram"
PROBE_TCP_S = 0.5  # probe interval while datagrams are not (yet) known to pass
PROBE_KEEPALIVE_S = 1.0  # in datagram mode: keeps acknowledgements coming when no media flows
REPORT_S = 0.25  # receiver report interval (only when something arrived)
FALLBACK_S = 3.0  # no acknowledgement or report for this long: back to the TCP link
REDUNDANCY_DEFAULT = 1  # earlier audio chunks carried per audio datagram
VIDEO_PIECE_BYTES = D.MAX_BODY_BYTES - B.VIDEO_HEADER_BYTES
AUDIO_DEDUP_CHUNKS = 256


@dataclass(frozen=True)
class ModeChanged:
    mode: str


@dataclass(frozen=True)
class FeedbackArrived:
    feedback: Feedback


Event = Deliver | KeyframeWanted | ModeChanged | FeedbackArrived


class DatagramChannel:
    """See the module docstring."""

    def __init__(self, *, tx_key: bytes, tx_channel: int, rx_key: bytes, now: float,
                 redundancy: int = REDUNDANCY_DEFAULT) -> None:
        self._sealer = D.Sealer(tx_key, tx_channel)
        self._opener = D.Opener(rx_key)
        self.mode = TCP
        self.exhausted = False
        self.redundancy = max(0, min(redundancy, B.MAX_REDUNDANCY))
        self._last_heard: float | None = None
        self._next_probe = now
        self._next_report = now + REPORT_S
        self._rx = ReceiverStats()
        self._view = SenderView()
        self.rtt_s: float | None = None
        # the last audio chunks sent, per voice (stream byte): copies repeat the same voice only
        self._audio_sent: dict[int, deque[bytes]] = {}
        self._video_out = VideoSender(VIDEO_PIECE_BYTES)
        self._rejoin = Reassembly()
        self._video_in = VideoReceiver()
        self._audio_seen: deque[bytes] = deque()
        self._audio_seen_set: set[bytes] = set()
        self._outbox: list[bytes] = []
        self._counters = {"sent": 0, "received": 0, "audio_recovered": 0, "audio_duplicates": 0, "resent_pieces": 0}

    # ----- sending ----------------------------------------------------------------------
    def datagrams_to_send(self) -> list[bytes]:
        out, self._outbox = self._outbox, []
        return out

    def _seal(self, type_: int, body: bytes, now: float) -> bool:
        try:
            self._outbox.append(self._sealer.seal(type_, us(now), body))
        except D.DatagramError:
            self.exhausted = True
            self.mode = TCP
            return False
        self._counters["sent"] += 1
        return True

    def set_redundancy(self, depth: int) -> None:
        self.redundancy = max(0, min(depth, B.MAX_REDUNDANCY))

    def send_media(self, data: bytes, now: float) -> bool:
        """Put a media message popped by the relay into datagrams (`datagrams_to_send`). False:
        send it over the TCP link instead. A relay fragment is held until its chunk is whole
        (True). MediaFormatError for bytes the relay would not have made."""
        if self.mode != DATAGRAM or self.exhausted:
            return False
        kind = C.peek_kind(data)
        if kind == C.KIND_FRAGMENT:
            whole = self._rejoin.join("out", data)
            if whole is None:
                return True
            data, kind = whole, C.KIND_CHUNK
        if kind == C.KIND_PADDING:
            return self._seal(D.T_MEDIA, data[:D.MAX_BODY_BYTES], now)
        if kind == C.KIND_CONFIG:
            # reliable over the link; a copy as a datagram too, so that it arrives before the
            # chunks that need it (receivers take a repeated config: holders repeat them anyway)
            if len(data) <= D.MAX_BODY_BYTES:
                self._seal(D.T_MEDIA, data, now)
            return False
        if kind != C.KIND_CHUNK:
            return False  # requests: reliable, over the link
        info = C.peek_chunk(data)
        if info.track == C.TRACK_AUDIO:
            return self._send_audio(data, now)
        return self._send_video(data, info.layer, now)

    def _send_audio(self, data: bytes, now: float) -> bool:
        if len(data) + 1 > D.MAX_BODY_BYTES:
            return False
        sent = self._audio_sent.setdefault(data[1], deque(maxlen=B.MAX_REDUNDANCY))
        earlier = [e for e in list(sent)[-self.redundancy:] if B.redundant_fits(data, e)] if self.redundancy else []
        body = B.encode_audio(data, earlier)
        while len(body) > D.MAX_BODY_BYTES and earlier:
            earlier = earlier[1:]
            body = B.encode_audio(data, earlier)
        sent.append(data)
        return self._seal(D.T_AUDIO, body, now)

    def _send_video(self, data: bytes, layer: int, now: float) -> bool:
        pieces = self._video_out.pieces(data, layer, now)
        if pieces is None:
            return False
        return all([self._seal(D.T_VIDEO, B.encode_video(p), now) for p in pieces])

    @property
    def counters(self) -> dict[str, int]:
        return {**self._counters, **self._video_in.counters}

    # ----- receiving --------------------------------------------------------------------
    def receive(self, data: bytes, now: float, *, arrived_at: float | None = None) -> list[Event]:
        """An authentic datagram's events; DatagramError (counted by the caller) for anything else.
        `arrived_at`: when it reached the host (the kernel's stamp), if before `now`: its delay is
        the path's, not the time it waited for this process."""
        opened = self._opener.open(data)
        self._rx.arrived(opened.counter, opened.send_time_us, min(now, arrived_at) if arrived_at is not None else now)
        self._counters["received"] += 1
        t, body = opened.type, opened.body
        if t == D.T_PROBE:
            if body:
                raise D.DatagramError("malformed", "probe with a body")
            self._seal(D.T_PROBE_ACK, B.encode_ack(B.ProbeAck(opened.send_time_us, 0)), now)
            return []
        if t == D.T_PROBE_ACK:
            ack = B.decode_ack(body)
            rtt = (us(now) - ack.echo_us - ack.hold_us) % D.TIME_MODULUS
            if rtt < 60_000_000:
                self.rtt_s = rtt / 1e6
            return self._heard(now)
        if t == D.T_REPORT:
            fb = self._view.report(B.decode_report(body), now)
            if fb is None:
                return []
            if fb.rtt_s is not None:
                self.rtt_s = fb.rtt_s
            elif self.rtt_s is not None:
                fb = replace(fb, rtt_s=self.rtt_s)  # the latest probe's round trip
            return self._heard(now) + [FeedbackArrived(fb)]
        if t == D.T_AUDIO:
            return [Deliver(c) for c in self._new_audio(B.decode_audio(body))]
        if t == D.T_VIDEO:
            return self._video(self._video_in.piece(B.decode_video(body), now), now)
        if t == D.T_NACK:
            for nack in decode_nacks(body):
                for p in self._video_out.resend(nack, now):
                    self._counters["resent_pieces"] += 1
                    self._seal(D.T_VIDEO, B.encode_video(p), now)
            return []
        try:  # T_MEDIA
            msg = C.parse(body)
        except C.MediaFormatError:
            raise D.DatagramError("malformed", "media datagram without a media message") from None
        if isinstance(msg, C.Padding):
            return []
        if isinstance(msg, C.Chunk) and msg.track == C.TRACK_AUDIO:
            return [Deliver(c) for c in self._new_audio([body])]
        return [Deliver(body)]

    def _heard(self, now: float) -> list[Event]:
        self._last_heard = now
        if self.mode == TCP and not self.exhausted:
            self.mode = DATAGRAM
            return [ModeChanged(DATAGRAM)]
        return []

    def _new_audio(self, chunks: list[bytes]) -> list[bytes]:
        out = []
        for i, c in enumerate(chunks):
            key = c  # the whole chunk: a presenter that starts over reuses sequences and timestamps
            if key in self._audio_seen_set:
                if i == len(chunks) - 1:
                    self._counters["audio_duplicates"] += 1
                continue
            if i < len(chunks) - 1:
                self._counters["audio_recovered"] += 1
            self._audio_seen.append(key)
            self._audio_seen_set.add(key)
            if len(self._audio_seen) > AUDIO_DEDUP_CHUNKS:
                self._audio_seen_set.discard(self._audio_seen.popleft())
            out.append(c)
        return out

    def _video(self, out: list, now: float) -> list[Event]:
        """Video receiver output: NACKs are sent, the rest are events."""
        nacks = [x for x in out if isinstance(x, Nack)]
        for group in split_nacks(nacks):
            self._seal(D.T_NACK, encode_nacks(group), now)
        return [x for x in out if not isinstance(x, Nack)]

    # ----- timers -----------------------------------------------------------------------
    def next_deadline(self) -> float:
        t = min(self._next_probe, self._next_report)
        v = self._video_in.next_deadline()
        if v is not None:
            t = min(t, v)
        if self.mode == DATAGRAM and self._last_heard is not None:
            t = min(t, self._last_heard + FALLBACK_S)
        return t

    def tick(self, now: float) -> list[Event]:
        events: list[Event] = []
        if self.mode == DATAGRAM and self._last_heard is not None and now - self._last_heard >= FALLBACK_S:
            self.mode = TCP
            events.append(ModeChanged(TCP))
        if now >= self._next_probe:
            if not self.exhausted:
                self._seal(D.T_PROBE, b"", now)
            self._next_probe = now + (PROBE_KEEPALIVE_S if self.mode == DATAGRAM else PROBE_TCP_S)
        self._video_in.rtt_s = self.rtt_s
        events += self._video(self._video_in.tick(now), now)
        if now >= self._next_report:
            if self._rx.pending():
                self._seal(D.T_REPORT, B.encode_report(self._rx.report(now)), now)
            self._next_report = now + REPORT_S
        return events

    # ----- status -----------------------------------------------------------------------
    def feedback(self) -> Feedback | None:
        return self._view.last

    def recent_loss(self, now: float) -> float | None:
        return self._view.recent_loss(now)
