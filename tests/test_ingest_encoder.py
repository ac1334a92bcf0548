"""MeshEncoder (real libvpx, libx264, libopus through PyAV) and the worker process's errors.

The chunks must be what the players and relays expect from /present: decodable configs, L1T3
temporal ids whose base layer decodes alone (a relay drops layers 1 and 2 first), keyframes on
request, Opus at the requested bitrate and frame length; a source that cannot be opened ends the
worker with a bilingual error event."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from meshmeet.ingest import pipe  # noqa: E402
from meshmeet.ingest.fit import fitted_size  # noqa: E402
from meshmeet.ingest.mesh_encoder import MeshEncoder, video_codecs_available  # noqa: E402
from meshmeet.ingest.source import parse_source  # noqa: E402
from meshmeet.media import chunk as C  # noqa: E402
from ingest_tools import TONE_HZ, tone_hz  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def frames(n: int, w: int = 1280, h: int = 720):
    base = np.zeros((h, w, 3), np.uint8)
    base[:, :, 0] = (np.arange(w) * 255 // w)[None, :]
    for i in range(n):
        img = base.copy()
        img[(i * 8) % (h - 20):(i * 8) % (h - 20) + 20, :, 1] = 255
        yield i, av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")


def tone(i: int, samples: int = 1920):
    t = (i * samples + np.arange(samples)) / 48000
    s = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    f = av.AudioFrame.from_ndarray(np.stack([s, s]), format="fltp", layout="stereo")
    f.sample_rate = 48000
    return f


def run(enc: MeshEncoder, n: int, clock: Clock | None = None, hook=None) -> list:
    out = []
    for i, f in frames(n):
        if hook:
            hook(i, enc)
        if clock:
            clock.t = i * 0.04
        out += enc.video(f, i * 40_000)
        out += enc.audio(tone(i), i * 40_000)
    return [C.parse(m) for m in out]


def decode(codec: str, chunks) -> int:
    d = av.CodecContext.create(codec, "r")
    n = 0
    for c in chunks:
        n += len(d.decode(av.Packet(c.payload)))
    return n


def pictures(chunks) -> dict:
    d = av.CodecContext.create("vp8", "r")
    return {c.timestamp_us: f.to_ndarray(format="gray") for c in chunks for f in d.decode(av.Packet(c.payload))}


def test_vp8_layers_base_layer_alone_and_keyframes() -> None:
    assert "vp8" in video_codecs_available()
    msgs = run(MeshEncoder(generation=7), 100)  # 4 s at 25 fps in, 20 fps out
    chunks = [m for m in msgs if isinstance(m, C.Chunk)]
    configs = [m for m in msgs if isinstance(m, C.DecoderConfig)]
    assert {(c.track, c.layer) for c in configs} == {(0, 0), (1, 0), (1, 1)}
    first = {}
    for i, m in enumerate(msgs):  # each config comes before the first chunk of its stream
        first.setdefault((m.track, m.layer, type(m).__name__), i)
    for track, layer in ((0, 0), (1, 0), (1, 1)):
        assert first[(track, layer, "DecoderConfig")] < first[(track, layer, "Chunk")]
    for layer in (C.LAYER_HIGH, C.LAYER_LOW):
        v = [c for c in chunks if c.track == 1 and c.layer == layer]
        assert len(v) == 80 and [c.seq for c in v] == list(range(80))
        assert [c.temporal_id for c in v[:8]] == [0, 2, 1, 2, 0, 2, 1, 2]
        assert [c.keyframe for c in v].count(True) == 2  # every 2 s
        assert v[0].keyframe and all(c.generation == 7 for c in v)
        assert decode("vp8", v) == 80
        base = [c for c in v if c.temporal_id == 0]  # what a relay at "high, base layer only" passes
        assert decode("vp8", base) == len(base) == 20
        t01 = [c for c in v if c.temporal_id <= 1]
        assert decode("vp8", t01) == len(t01) == 40
        ts = [c.timestamp_us for c in v]
        assert ts == sorted(ts) and ts[1] - ts[0] >= 40_000
        # a relay that drops to the base layer and adds layers 1 and 2 back at a base frame: the
        # frames after that decode exactly as in the full stream (nothing refers to a dropped frame)
        full = pictures(v)
        part = pictures([c for i, c in enumerate(v) if i < 4 or i >= 12 or c.temporal_id == 0])
        after = [t for t in part if t >= v[12].timestamp_us]
        assert len(after) == 68 and all(np.array_equal(full[t], part[t]) for t in after)


def test_keyframe_request_and_audio_rate_request() -> None:
    clock = Clock()
    enc = MeshEncoder(clock=clock)

    def hook(i: int, e: MeshEncoder) -> None:
        if i == 30:
            e.request(C.encode_keyframe_request(C.KeyframeRequest(C.LAYER_LOW)))
        if i == 50:
            e.request(C.encode_audio_rate_request(C.AudioRateRequest(12, 40, 5)))
        if i == 60:
            e.request(b"\x03\xff")  # malformed: ignored

    msgs = run(enc, 100, clock, hook)
    low_keys = [c.timestamp_us for c in msgs if isinstance(c, C.Chunk) and c.track == 1 and c.layer == 1 and c.keyframe]
    high_keys = [c.timestamp_us for c in msgs if isinstance(c, C.Chunk) and c.track == 1 and c.layer == 0 and c.keyframe]
    assert any(1_200_000 <= t <= 1_300_000 for t in low_keys) and not any(1_200_000 <= t <= 1_300_000 for t in high_keys)
    assert enc.counters["keyframes_on_request"] == 1
    audio = [c for c in msgs if isinstance(c, C.Chunk) and c.track == 0]
    before = [c for c in audio if c.timestamp_us < 1_900_000]
    after = [c for c in audio if c.timestamp_us > 2_200_000]
    assert {c.duration_us for c in before} == {20_000} and {c.duration_us for c in after} == {40_000}
    assert enc.audio_encoding == (12, 40, 5)
    assert sum(len(c.payload) for c in after) / (len(after) * 0.04) * 8 < 16_000  # ~12 kbit/s
    assert [c.seq for c in audio] == list(range(len(audio)))
    # the whole stream decodes and still carries the tone, across the encoder change
    d = av.CodecContext.create("libopus", "r")
    d.sample_rate, d.layout = 48000, "mono"
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for c in audio for f in d.decode(av.Packet(c.payload))])
    assert abs(tone_hz(pcm[-48000:]) - TONE_HZ) < 5
    # 6 s after the last request the preset returns
    clock.t = 20.0
    enc.audio(tone(500), 20_000_000)
    assert enc.audio_encoding == (24, 20, 0)


def test_h264_fallback_is_annexb_baseline() -> None:
    msgs = run(MeshEncoder(codec="h264"), 40)
    cfg = [m for m in msgs if isinstance(m, C.DecoderConfig) and m.track == 1]
    assert {m.config["codec"] for m in cfg} == {"avc1.42E01F"} and all("description" not in m.config for m in cfg)
    v = [c for c in msgs if isinstance(c, C.Chunk) and c.track == 1 and c.layer == 0]
    assert v[0].keyframe and v[0].payload[:4] in (b"\0\0\0\1", b"\0\0\1\x09"[:4]) or v[0].payload[:3] == b"\0\0\1"
    assert all(c.temporal_id == 0 for c in v)
    assert decode("h264", v) >= len(v) - 2  # the decoder may hold the last frames back


def worker_events(**source) -> tuple[int, list[dict]]:
    spec = {"source": parse_source(**source).to_json(), "generation": 100, "ts_base_us": 0}
    # stdin stays open (the worker ends at once when it closes: the node is gone)
    p = subprocess.Popen([sys.executable, "-m", "meshmeet.ingest.worker", json.dumps(spec)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    rc = p.wait(timeout=120)
    p.stdin.close()
    frames_ = pipe.FrameReader().feed(out)
    return rc, [f.status() for f in frames_ if f.type == pipe.STATUS]


@pytest.mark.parametrize("url,code", [
    ("rtmp://127.0.0.1:1/live/k", "refused"),
    ("rtmp://no-such-host.invalid/live/k", "dns"),
    ("srt://127.0.0.1:9/", "unsupported"),  # this PyAV build has no libsrt
])
def test_worker_errors_are_bilingual(url: str, code: str) -> None:
    rc, events = worker_events(url=url)
    err = [e for e in events if e["event"] == "error"]
    assert rc == 2 and err and err[0]["code"] == code, events
    assert err[0]["vi"] and err[0]["en"] and err[0]["vi"] != err[0]["en"]


def _white(w: int, h: int):
    return av.VideoFrame.from_ndarray(np.full((h, w, 3), 255, np.uint8), format="rgb24")


@pytest.mark.parametrize("w,h,bars", [(480, 360, "sides"), (720, 1280, "sides"), (1280, 400, "top"), (1920, 1080, None)])
def test_a_source_of_another_shape_gets_black_bars_not_a_stretch(w: int, h: int, bars: str | None) -> None:
    enc = MeshEncoder(generation=1, codec="vp8")
    msgs = [C.parse(m) for i in range(3) for m in enc.video(_white(w, h), i * 50_000)]
    for layer, (lw, lh) in ((C.LAYER_HIGH, (640, 360)), (C.LAYER_LOW, (320, 180))):
        pics = pictures([m for m in msgs if isinstance(m, C.Chunk) and m.track == 1 and m.layer == layer])
        y = pics[max(pics)]
        assert y.shape == (lh, lw)
        assert y[lh // 2, lw // 2] > 200  # the picture itself, centred
        fw, fh = fitted_size(w, h, lw, lh)
        edge_cols = [y[lh // 2, 1], y[lh // 2, lw - 2]]
        edge_rows = [y[1, lw // 2], y[lh - 2, lw // 2]]
        if bars == "sides":
            assert max(edge_cols) < 40 and min(edge_rows) > 200, (edge_cols, edge_rows)
            inside = (lw - fw) // 2 + 4
            assert y[lh // 2, inside] > 200 and y[lh // 2, lw - 1 - inside] > 200  # no more bar than needed
        elif bars == "top":
            assert max(edge_rows) < 40 and min(edge_cols) > 200, (edge_cols, edge_rows)
        else:
            assert min(edge_cols + edge_rows) > 200  # 16:9 in: the whole frame, no bars


@given(st.integers(1, 8000), st.integers(1, 8000))
def test_fitted_size_fits_keeps_the_shape_and_is_even(w: int, h: int) -> None:
    fw, fh = fitted_size(w, h, 640, 360)
    assert 2 <= fw <= 640 and 2 <= fh <= 360 and fw % 2 == 0 and fh % 2 == 0
    assert fw == 640 or fh == 360 or fw == 2 or fh == 2  # as large as fits
    if fw > 20 and fh > 20:
        assert abs(fw / fh - w / h) / (w / h) < 0.1
