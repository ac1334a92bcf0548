"""Test and benchmark helpers for the ingest: a real upstream stream made with PyAV, and a hall
subscriber that decodes what a node's /media/ws/hall sends.

`python tests/ingest_tools.py URL FORMAT SECONDS [WxH] [key=value ...]` pushes (or writes) a test
pattern with a 440 Hz tone, H.264 + AAC, paced in real time; its first stdout line is
`{"t0": wall time of source time 0}`; with INGEST_TOOLS_LOG=1 a line per muxed packet follows. `HallSubscriber` joins fragments like the player does,
decodes Opus and VP8/H.264 with PyAV, and keeps what the checks need (PCM, decoded frames per
generation, decode wall times by chunk timestamp). `tone_hz` finds the strongest tone by FFT.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import os
import sys
import time
from dataclasses import dataclass, field

TONE_HZ = 440.0
FPS = 25


def push_stream(url: str, fmt: str, seconds: float, size: str = "640x360", options: dict | None = None,
                log_packets: bool = False) -> int:
    """Frames and tone are made before the clock starts (only encoding runs in the paced loop), so
    a loaded host delays the stream as little as possible; with `log_packets` each muxed packet's
    `v|a source_seconds wall_time` goes to stdout (a benchmark's source timestamps)."""
    import av
    import numpy as np

    w, h = (int(x) for x in size.split("x"))
    out = av.open(url, "w", format=fmt, options=options or {})
    v = out.add_stream("libx264", rate=FPS)
    v.width, v.height, v.pix_fmt = w, h, "yuv420p"
    v.codec_context.thread_count = 1
    v.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(FPS)}
    a = out.add_stream("aac", rate=48000)
    a.layout = "stereo"
    base = np.zeros((h, w, 3), np.uint8)
    base[:, :, 0] = (np.arange(w) * 255 // w)[None, :]
    pictures = []
    for i in range(FPS * 2):  # a bar moving down, 2 s, repeated
        img = base.copy()
        y = (i * (h - 20)) // (FPS * 2)
        img[y:y + 20, :, 1] = 255
        pictures.append(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p").to_ndarray())
    t = np.arange(48000) / 48000  # one second of tone: 440 Hz repeats exactly
    tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)

    def mux(packets, kind: str) -> None:
        for p in packets:
            out.mux(p)
            if log_packets and p.pts is not None:
                print(f"{kind} {float(p.pts * p.time_base):.6f} {time.time():.6f}")

    t0 = time.time()
    print(json.dumps({"t0": t0}), flush=True)
    n = asamp = 0
    while n / FPS < seconds:
        f = av.VideoFrame.from_ndarray(pictures[n % len(pictures)], format="yuv420p")
        f.pts, f.time_base = n, fractions.Fraction(1, FPS)
        mux(v.encode(f), "v")
        while asamp < (n + 1) * 48000 // FPS:
            idx = (asamp + np.arange(1024)) % 48000
            af = av.AudioFrame.from_ndarray(np.stack([tone[idx], tone[idx]]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, asamp
            mux(a.encode(af), "a")
            asamp += 1024
        n += 1
        delay = t0 + n / FPS - time.time()
        if delay > 0:
            time.sleep(delay)
        if log_packets:
            sys.stdout.flush()
    for st, kind in ((v, "v"), (a, "a")):
        mux(st.encode(None), kind)
    out.close()
    return n


def tone_hz(pcm) -> float:
    """The frequency of the strongest component (FFT, Hann window)."""
    import numpy as np

    x = np.asarray(pcm, dtype=float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spec[0] = 0
    return float(np.argmax(spec) * 48000 / len(x))


@dataclass
class HallSubscriber:
    """Decodes a hall socket's media with PyAV (as the hall player decodes it with WebCodecs)."""

    pcm: list = field(default_factory=list)
    frames: dict = field(default_factory=dict)  # generation -> video frames decoded (high or low layer)
    audio_chunks: dict = field(default_factory=dict)  # generation -> audio chunks decoded
    decoded_at: list = field(default_factory=list)  # (track, chunk timestamp µs, wall time decoded)
    errors: int = 0
    configs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from meshmeet.media.relay import MediaRelay

        self._reasm = MediaRelay(source="x", keep_accepted=True)
        self._adec = None
        self._vdec: dict = {}

    def feed(self, data: bytes) -> None:
        import av

        from meshmeet.media import chunk as C

        self._reasm.receive("x", data, 0.0)
        for whole in self._reasm.take_accepted():
            m = C.parse(whole)
            if isinstance(m, C.DecoderConfig):
                prev = self.configs.get((m.track, m.layer))
                self.configs[(m.track, m.layer)] = m
                if prev is not None and prev.generation == m.generation:
                    continue  # a repeat (every 5 s, for late joiners): keep the decoder, as the player does
                if m.track == C.TRACK_AUDIO:
                    self._adec = av.CodecContext.create("libopus", "r")
                    self._adec.sample_rate, self._adec.layout = 48000, "mono"
                else:
                    name = "vp8" if m.config["codec"] == "vp8" else "h264"
                    self._vdec[m.layer] = (m.generation, av.CodecContext.create(name, "r"))
                continue
            if not isinstance(m, C.Chunk):
                continue
            try:
                if m.track == C.TRACK_AUDIO and self._adec is not None:
                    for fr in self._adec.decode(av.Packet(m.payload)):
                        self.pcm.extend(fr.to_ndarray().reshape(-1).tolist())
                        self.audio_chunks[m.generation] = self.audio_chunks.get(m.generation, 0) + 1
                        self.decoded_at.append((0, m.timestamp_us, time.time()))
                elif m.track == C.TRACK_VIDEO and m.layer in self._vdec:
                    for _fr in self._vdec[m.layer][1].decode(av.Packet(m.payload)):
                        self.frames[m.generation] = self.frames.get(m.generation, 0) + 1
                        self.decoded_at.append((1, m.timestamp_us, time.time()))
            except av.error.FFmpegError:
                self.errors += 1

    async def listen(self, ws_url: str, until, *, guard_s: float = 90.0) -> None:
        """Receive until `until(self)` is true (checked per message) or the hang guard ends."""
        import aiohttp

        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
            async def loop() -> None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        self.feed(msg.data)
                        if until(self):
                            return
            try:
                await asyncio.wait_for(loop(), guard_s)
            except asyncio.TimeoutError:
                pass


if __name__ == "__main__":
    url, fmt, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
    size = sys.argv[4] if len(sys.argv) > 4 else "640x360"
    opts = dict(kv.split("=", 1) for kv in sys.argv[5:])
    log = os.environ.get("INGEST_TOOLS_LOG") == "1"
    sys.exit(0 if push_stream(url, fmt, secs, size, opts, log_packets=log) else 1)
