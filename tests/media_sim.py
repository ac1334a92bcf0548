"""A deterministic source and link loop for relay tests and the benchmark (no clock, no I/O)."""

from __future__ import annotations

from meshmeet.media import chunk as C
from meshmeet.media.relay import MediaRelay, Outgoing

AUDIO_BYTES = 74  # 24 kbit/s Opus at 20 ms + 14 B header
AUDIO_PRESET_KBPS = 24  # the presenter's chosen preset (the ceiling)
AUDIO_HOLD_S = 6.0  # back to the preset after this long without an audio rate request
HIGH_BYTES = (4000, 900)  # keyframe / delta at 640x360: ~166 kbit/s at 20 fps
LOW_BYTES = (2200, 520)  # 320x180: ~93 kbit/s
FPS = 20
KEYFRAME_EVERY = 40  # 2 s
TEMPORAL = (0, 2, 1, 2)  # L1T3


class Source:
    """Makes the presenter's messages at t; `force_key` answers a keyframe request."""

    def __init__(self) -> None:
        self.aseq = 0
        self.vseq = 0
        self.force_key: set[int] = set()
        self.keyframes_sent = 0
        self.audio_kbps = AUDIO_PRESET_KBPS  # what the Opus encoder runs at now
        self.rate_requests: list[tuple[float, int]] = []  # (t, kbit/s) as they arrived
        self.t = 0.0

    def audio_rate_request(self, kbps: int) -> None:
        """As the presenter page does: at most the request, never above the chosen preset."""
        self.rate_requests.append((self.t, kbps))
        self.audio_kbps = min(AUDIO_PRESET_KBPS, kbps)

    def _hold(self) -> None:
        if self.rate_requests and self.t - self.rate_requests[-1][0] >= AUDIO_HOLD_S:
            self.audio_kbps = AUDIO_PRESET_KBPS

    def configs(self) -> list[bytes]:
        return [C.encode(C.DecoderConfig(C.TRACK_AUDIO, 0, 0, {"codec": "opus", "sampleRate": 48000, "numberOfChannels": 1})),
                C.encode(C.DecoderConfig(C.TRACK_VIDEO, 0, 0, {"codec": "vp8", "codedWidth": 640, "codedHeight": 360})),
                C.encode(C.DecoderConfig(C.TRACK_VIDEO, 1, 0, {"codec": "vp8", "codedWidth": 320, "codedHeight": 180}))]

    def audio(self) -> bytes:
        self._hold()
        payload = bytes(self.audio_kbps * 1000 // 8 * 20 // 1000)  # one 20 ms frame at the current bitrate
        c = C.Chunk(C.TRACK_AUDIO, 0, 0, True, 0, self.aseq, self.aseq * 20000, 20000, payload)
        self.aseq += 1
        return C.encode(c)

    def video(self) -> list[bytes]:
        i = self.vseq
        out = []
        for layer, sizes in ((0, HIGH_BYTES), (1, LOW_BYTES)):
            key = i % KEYFRAME_EVERY == 0 or layer in self.force_key
            tid = 0 if key else TEMPORAL[i % 4]
            self.keyframes_sent += key
            out.append(C.encode(C.Chunk(C.TRACK_VIDEO, layer, tid, key, 0, i, i * 50000, 50000,
                                        bytes((sizes[0] if key else sizes[1]) - 14))))
        self.force_key.clear()
        self.vseq += 1
        return out


def run(relay: MediaRelay, src: Source, links: list[str], t0: float, t1: float, *, step: float = 0.005,
        received: dict[str, list[tuple[float, bytes]]] | None = None, source_link: str = "src",
        on_step=None) -> None:
    """Advance from t0 to t1: source emits, relay ticks, every link drains what it may."""
    n0 = round(t0 / step)
    for n in range(n0, round(t1 / step)):
        t = n * step
        src.t = t
        msgs: list[bytes] = []
        if n % round(0.02 / step) == 0:
            msgs.append(src.audio())
        if n % round(0.05 / step) == 0:
            msgs += src.video()
        for m in msgs:
            _route(relay.receive(source_link, m, t), src)
        _route(relay.tick(t), src)
        for link in links:
            while True:
                d = relay.pop(link, t)
                if d is None:
                    break
                if received is not None:
                    received.setdefault(link, []).append((t, d))
        if on_step is not None:
            on_step(t)


def _route(outs: list[Outgoing], src: Source) -> None:
    for o in outs:
        req = C.parse(o.data)
        if isinstance(req, C.AudioRateRequest):
            src.audio_rate_request(req.kbps)
            continue
        assert isinstance(req, C.KeyframeRequest)
        src.force_key.add(req.layer)
