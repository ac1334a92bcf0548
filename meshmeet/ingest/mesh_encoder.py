"""Decoded frames in, the presenter's media messages out: Opus 48 kHz mono + two VP8 layers, L1T3.

Exactly what the browser presenter at /present sends (meshmeet/web/static/media/present.js,
docs/protocol/media.md): audio 20 ms Opus frames (24 kbit/s preset; audio rate requests lower the
bitrate, lengthen frames to 40/60 ms and turn on in-band FEC, held 6 s); video at 640x360
(400 kbit/s) and 320x180 (150 kbit/s), at most 20 frames/s, temporal layers 0,2,1,2 (libvpx's
3-layer pattern, so a relay may drop layers 2 and 1 and the rest still decodes), a keyframe every
2 s and on request (at most one per 0.25 s per layer). Without libvpx it falls back to H.264
(libx264 baseline, Annex B, the presenter's "avc1.42E01F"), every frame temporal layer 0.
Decoder configs (kind 0x02) go out before the first chunk of each (track, layer) and whenever they
change; the caller repeats `configs()` as it likes. Timestamps are the caller's (µs).

CPU-bound and blocking: run it in the worker process, never on the node's trio thread.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av

from ..media import chunk as C
from .fit import Fitter

AUDIO_RATE = 48000
AUDIO_PRESET_KBPS = 24
AUDIO_RATE_HOLD_S = 6.0
KEYFRAME_EVERY_US = 2_000_000
KEYFRAME_REQUEST_MIN_S = 0.25
MAX_FPS = 20
FRAME_INTERVAL_US = 1_000_000 // MAX_FPS
TEMPORAL_PATTERN = (0, 2, 1, 2)  # libvpx ts_layering_mode 3: what each frame of the period is
LAYERS = ((C.LAYER_HIGH, 640, 360, 400_000), (C.LAYER_LOW, 320, 180, 150_000))
TIME_BASE_US = Fraction(1, 1_000_000)
H264_CODEC = "avc1.42E01F"


@dataclass
class _Video:
    layer: int
    width: int
    height: int
    bitrate: int
    ctx: av.CodecContext
    codec: str
    seq: int = 0
    index: int = 0  # frames given to the encoder (its temporal pattern position)
    last_key_us: int = -(1 << 62)
    force_key: bool = True
    last_request_s: float = -1e9
    config_sent: bool = False


def _vp8(width: int, height: int, bitrate: int) -> av.CodecContext:
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = TIME_BASE_US
    ctx.framerate = Fraction(MAX_FPS, 1)
    ctx.bit_rate = bitrate
    ctx.gop_size = 10_000  # keyframes come when we ask for them
    ctx.thread_count = 1  # FFmpeg's default (one per core) cost 10x the CPU and wall time on a busy 2-core host
    kbps = bitrate // 1000
    ctx.options = {
        "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1",
        "auto-alt-ref": "0", "drop-threshold": "0", "noise-sensitivity": "0", "max-intra-rate": "300",
        "ts-parameters": (f"ts_number_layers=3:ts_target_bitrate={kbps * 4 // 10},{kbps * 6 // 10},{kbps}:"
                          "ts_rate_decimator=4,2,1:ts_periodicity=4:ts_layer_id=0,2,1,2:ts_layering_mode=3"),
    }
    ctx.open()
    return ctx


def _h264(width: int, height: int, bitrate: int) -> av.CodecContext:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = TIME_BASE_US
    ctx.framerate = Fraction(MAX_FPS, 1)
    ctx.bit_rate = bitrate
    ctx.gop_size = 10_000
    ctx.thread_count = 1
    ctx.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline", "level": "3.1",
                   "x264-params": "annexb=1:repeat-headers=1:bframes=0:scenecut=0"}
    ctx.open()
    return ctx


def video_codecs_available() -> list[str]:
    """The video codecs this PyAV build can encode, best first ("vp8", "h264")."""
    out = []
    for name, codec in (("libvpx", "vp8"), ("libx264", "h264")):
        try:
            av.Codec(name, "w")
        except Exception:  # noqa: BLE001 (PyAV raises different errors by version)
            continue
        out.append(codec)
    return out


class MeshEncoder:
    """Feed `video(frame, ts_us)` and `audio(frame, ts_us)`; each returns media messages to send."""

    def __init__(self, *, generation: int = 1, codec: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.generation = generation & 0xFF
        codec = codec or (video_codecs_available() or ["none"])[0]
        if codec not in ("vp8", "h264"):
            raise RuntimeError("no VP8 or H.264 encoder in this PyAV build")
        self.codec = codec
        make = _vp8 if codec == "vp8" else _h264
        self._video = [_Video(layer, w, h, br, make(w, h, br), "vp8" if codec == "vp8" else H264_CODEC)
                       for layer, w, h, br in LAYERS]
        self._next_video_us: int | None = None
        self._fit = Fitter(LAYERS[0][1], LAYERS[0][2])  # a 4:3 source gets black bars, not a stretch
        # audio
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        self._fifo = av.AudioFifo()
        self._fifo_start_us: int | None = None  # timestamp of the first sample in the fifo
        self._audio_seq = 0
        self._audio_config_sent = False
        self._want = (AUDIO_PRESET_KBPS, 20, 0)  # kbit/s, frame ms, FEC loss %
        self._request_until = -1e18
        self._request = (AUDIO_PRESET_KBPS, 20, 0)
        self._audio_ctx: av.CodecContext | None = None
        self._audio_running: tuple[int, int, int] | None = None
        self._pending_audio_ts: deque[tuple[int, int]] = deque()
        self.counters = {"video_in": 0, "video_skipped": 0, "audio_in": 0, "keyframes_on_request": 0}

    # ----- requests from the mesh ---------------------------------------------------------------
    def request(self, data: bytes) -> None:
        """A keyframe or audio rate request (kind 0x03 / 0x06) from the node; malformed: ignored."""
        try:
            m = C.parse(data)
        except C.MediaFormatError:
            return
        now = self._clock()
        if isinstance(m, C.KeyframeRequest):
            for v in self._video:
                if v.layer == m.layer:
                    v.force_key = True
                    v.last_request_s = now
        elif isinstance(m, C.AudioRateRequest):
            kbps = AUDIO_PRESET_KBPS if m.kbps == 255 else min(AUDIO_PRESET_KBPS, m.kbps)
            self._request = (kbps, m.frame_ms, min(30, m.fec_loss_percent))
            self._request_until = now + AUDIO_RATE_HOLD_S

    @property
    def audio_encoding(self) -> tuple[int, int, int]:
        """(kbit/s, frame ms, FEC loss %) the Opus encoder runs with now."""
        return self._audio_running or self._want

    # ----- configs --------------------------------------------------------------------------------
    def configs(self) -> list[bytes]:
        """Every decoder config (audio, high, low): the caller repeats them for late joiners."""
        out = [C.encode_config(C.DecoderConfig(C.TRACK_AUDIO, 0, self.generation,
                                               {"codec": "opus", "numberOfChannels": 1, "sampleRate": AUDIO_RATE}))]
        for v in self._video:
            out.append(C.encode_config(C.DecoderConfig(C.TRACK_VIDEO, v.layer, self.generation,
                                                       {"codec": v.codec, "codedHeight": v.height, "codedWidth": v.width})))
        return out

    # ----- video ----------------------------------------------------------------------------------
    def video(self, frame: av.VideoFrame, ts_us: int) -> list[bytes]:
        self.counters["video_in"] += 1
        if self._next_video_us is not None and ts_us < self._next_video_us:
            self.counters["video_skipped"] += 1  # above MAX_FPS: drop this one
            return []
        if self._next_video_us is None or ts_us - self._next_video_us > 4 * FRAME_INTERVAL_US:
            self._next_video_us = ts_us
        self._next_video_us += FRAME_INTERVAL_US
        out: list[bytes] = []
        img = self._fit.fit(frame)
        for v in self._video:  # high first: the low layer is scaled from the high one (cheaper)
            if (img.width, img.height) != (v.width, v.height):
                img = img.reformat(width=v.width, height=v.height, format="yuv420p")
            img.pts = ts_us
            img.time_base = TIME_BASE_US
            key = v.force_key or ts_us - v.last_key_us >= KEYFRAME_EVERY_US
            if key:
                if v.force_key and v.last_request_s > -1e9:
                    self.counters["keyframes_on_request"] += 1
                img.pict_type = av.video.frame.PictureType.I
                v.last_key_us, v.force_key = ts_us, False
            else:
                img.pict_type = av.video.frame.PictureType.NONE
            tid = TEMPORAL_PATTERN[v.index % len(TEMPORAL_PATTERN)] if v.codec == "vp8" else 0
            v.index += 1
            for pkt in v.ctx.encode(img):
                out += self._video_packet(v, pkt, tid)
        return out

    def _video_packet(self, v: _Video, pkt: av.Packet, tid: int) -> list[bytes]:
        out: list[bytes] = []
        if not v.config_sent:
            out.append(self.configs()[1 + v.layer])
            v.config_sent = True
        keyframe = bool(pkt.is_keyframe)
        ts = max(0, int(pkt.pts or 0)) & C.MAX_TIMESTAMP_US
        out.append(C.encode_chunk(C.Chunk(C.TRACK_VIDEO, v.layer, 0 if keyframe else tid, keyframe, self.generation,
                                          v.seq & 0xFFFFFFFF, ts, FRAME_INTERVAL_US, bytes(pkt))))
        v.seq += 1
        return out

    # ----- audio ----------------------------------------------------------------------------------
    def _wanted_audio(self) -> tuple[int, int, int]:
        return self._request if self._clock() < self._request_until else (AUDIO_PRESET_KBPS, 20, 0)

    def _audio_encoder(self) -> av.CodecContext:
        want = self._wanted_audio()
        if self._audio_ctx is None or want != self._audio_running:
            kbps, frame_ms, fec = want
            ctx = av.CodecContext.create("libopus", "w")
            ctx.sample_rate, ctx.layout, ctx.format = AUDIO_RATE, "mono", "s16"
            ctx.time_base = Fraction(1, AUDIO_RATE)
            ctx.bit_rate = kbps * 1000
            opts = {"application": "voip", "frame_duration": str(frame_ms), "vbr": "on"}
            if fec:
                opts.update({"fec": "1", "packet_loss": str(fec)})
            ctx.options = opts
            ctx.open()
            self._audio_ctx, self._audio_running = ctx, want
            self._pending_audio_ts.clear()
        return self._audio_ctx

    def audio(self, frame: av.AudioFrame, ts_us: int) -> list[bytes]:
        self.counters["audio_in"] += 1
        out: list[bytes] = []
        for f in self._resampler.resample(frame):
            if self._fifo_start_us is None or self._fifo.samples == 0:
                # realign on the source clock when the fifo is empty (a gap or a restart)
                self._fifo_start_us = ts_us
            f.pts = None
            self._fifo.write(f)
            ts_us += f.samples * 1_000_000 // AUDIO_RATE
        while True:
            ctx = self._audio_encoder()
            n = AUDIO_RATE * self._audio_running[1] // 1000
            if self._fifo.samples < n:
                break
            chunk_frame = self._fifo.read(n)
            start_us = self._fifo_start_us
            self._fifo_start_us += n * 1_000_000 // AUDIO_RATE
            chunk_frame.pts = None
            self._pending_audio_ts.append((start_us, n * 1_000_000 // AUDIO_RATE))
            for pkt in ctx.encode(chunk_frame):
                out += self._audio_packet(pkt)
        return out

    def _audio_packet(self, pkt: av.Packet) -> list[bytes]:
        out: list[bytes] = []
        if not self._audio_config_sent:
            out.append(self.configs()[0])
            self._audio_config_sent = True
        ts, dur = self._pending_audio_ts.popleft() if self._pending_audio_ts else (0, 20_000)
        out.append(C.encode_chunk(C.Chunk(C.TRACK_AUDIO, 0, 0, True, self.generation, self._audio_seq & 0xFFFFFFFF,
                                          ts & C.MAX_TIMESTAMP_US, dur, bytes(pkt))))
        self._audio_seq += 1
        return out
