#!/usr/bin/env python3
"""The ingest benchmark's baseline: plain PyAV decode + encode of the same pushed stream, in a child
process like the ingest worker (RTMP listen, decode, scale to 640x360, one VP8 layer + Opus, default
settings, one thread each as in the ingest), reporting per encoded packet `source seconds, wall time` as text lines on stdout and its
CPU seconds at the end. No mesh, no layers, no relay: what any FFmpeg relay costs.

    python scripts/bench/_ingest_baseline.py PORT
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction

import av


def main() -> int:
    port = int(sys.argv[1])
    c = av.open(f"rtmp://127.0.0.1:{port}/live/stream", format="flv", options={"listen": "1"}, timeout=(None, 10.0))
    vs = [s for s in c.streams if s.type == "video"][:1]
    as_ = [s for s in c.streams if s.type == "audio"][:1]
    venc = av.CodecContext.create("libvpx", "w")
    venc.width, venc.height, venc.pix_fmt = 640, 360, "yuv420p"
    venc.time_base, venc.bit_rate = Fraction(1, 1_000_000), 400_000
    venc.options = {"deadline": "realtime", "lag-in-frames": "0"}
    venc.thread_count = 1  # as the ingest: FFmpeg's one thread per core costs far more on 2 busy cores
    for s in vs + as_:
        s.thread_count = 1
    aenc = av.CodecContext.create("libopus", "w")
    aenc.sample_rate, aenc.layout, aenc.format, aenc.bit_rate = 48000, "mono", "s16", 24000
    res = av.AudioResampler(format="s16", layout="mono", rate=48000, frame_size=960)
    cpu0 = time.process_time()
    try:
        for packet in c.demux(*(vs + as_)):
            for frame in packet.decode():
                t = frame.time
                if t is None:
                    continue
                if packet.stream.type == "video":
                    img = frame.reformat(width=640, height=360, format="yuv420p")
                    img.pts, img.time_base = int(t * 1_000_000), Fraction(1, 1_000_000)
                    pkts = venc.encode(img)
                else:
                    pkts = [p for f in res.resample(frame) for p in aenc.encode(f)]
                for _ in pkts:
                    sys.stdout.write(f"{packet.stream.type[0]} {t:.6f} {time.time():.6f}\n")
            sys.stdout.flush()
    except av.error.FFmpegError:  # the push ended (EOF, I/O error or read timeout)
        pass
    sys.stdout.write(f"cpu {time.process_time() - cpu0:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
