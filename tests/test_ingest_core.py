"""The ingest's sans-IO parts: source checks (the boundary: what an operator or a chair's browser
names), the worker pipe's framing, and the restart supervisor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.ingest import pipe
from meshmeet.ingest.source import IngestSource, SourceError, behind_gate, parse_source
from meshmeet.ingest.supervisor import BACKOFF_MAX_S, GENERATION_FIRST, TS_GAP_US, Supervisor
from meshmeet.media import chunk as C
from conftest import doc_json_blocks


# ----- source ---------------------------------------------------------------------------------
@pytest.mark.parametrize("url,fmt,whitelist", [
    ("rtmp://10.0.0.5/live/secretkey", "flv", "rtmp,tcp"),
    ("rtmps://tinh.example.vn:443/app/key", "flv", "rtmps,rtmp,tls,tcp"),
    ("rtsp://192.168.1.20:554/stream1", "rtsp", "rtsp,rtp,udp,tcp"),
    ("srt://10.0.0.5:9000?streamid=x", "mpegts", "srt"),
    ("https://hoinghi.example.vn/live/tinh.m3u8", "hls", "https,http,tls,tcp,crypto"),
])
def test_pull_sources(url: str, fmt: str, whitelist: str) -> None:
    src = parse_source(url=url)
    assert (src.url, src.format, src.options["protocol_whitelist"], src.listen) == (url, fmt, whitelist, False)
    assert "secretkey" not in src.shown and "streamid" not in src.shown and "key" not in src.shown.split("/")[-1]
    assert IngestSource.from_json(src.to_json()) == src


def test_listen_sources() -> None:
    r = parse_source(listen=1935)
    assert (r.url, r.format, r.options["listen"], r.listen) == ("rtmp://0.0.0.0:1935/live/stream", "flv", "1", True)
    s = parse_source(listen=8554, protocol="rtsp", bind="127.0.0.1")
    assert (s.url, s.options["rtsp_flags"], s.shown) == ("rtsp://127.0.0.1:8554/live", "listen", "rtsp listen 127.0.0.1:8554")
    # FFmpeg itself listens on loopback behind the stream-key gate; status still names the public port
    g = behind_gate(r, 40001)
    assert (g.url, g.options, g.shown, g.listen) == ("rtmp://127.0.0.1:40001/live/stream", r.options, r.shown, True)
    assert behind_gate(s, 40002).url == "rtsp://127.0.0.1:40002/live"
    with pytest.raises(ValueError):
        behind_gate(parse_source(url="rtmp://h/live/k"), 40003)


@pytest.mark.parametrize("kwargs,en", [
    ({"url": "file:///etc/passwd"}, "unsupported scheme"),
    ({"url": "concat:a|b"}, "unsupported scheme"),
    ({"url": "pipe:0"}, "unsupported scheme"),
    ({"url": "http://x/video.mp4"}, "only HLS"),
    ({"url": "rtmp:///nohost"}, "no valid host"),
    ({"url": "rtmp://a b/x"}, "spaces"),
    ({"url": "rtmp://h:0/x"}, "port 0"),
    ({"url": "rtmp://h:99999/x"}, "malformed"),
    ({"url": ""}, "empty"),
    ({}, "exactly one"),
    ({"url": "rtmp://h/x", "listen": 1935}, "exactly one"),
    ({"listen": 0}, "1 to 65535"),
    ({"listen": True}, "1 to 65535"),
    ({"listen": "1935"}, "1 to 65535"),
    ({"listen": 1935, "protocol": "srt"}, "rtmp or rtsp"),
    ({"listen": 1935, "bind": "evil.example"}, "IP address"),
    ({"url": "srt://h:1", "protocols": {"rtmp", "tcp"}}, "no srt protocol"),
])
def test_bad_sources_are_bilingual(kwargs: dict, en: str) -> None:
    with pytest.raises(SourceError) as e:
        parse_source(**kwargs)
    assert en in e.value.en and e.value.vi and e.value.vi != e.value.en


@settings(max_examples=400)
@given(st.one_of(st.text(max_size=300), st.from_regex(r"(rtmp|rtsp|srt|https?|file|ftp)://[ -~]{0,80}", fullmatch=True)))
def test_any_url_gives_a_source_or_a_source_error(url: str) -> None:
    try:
        src = parse_source(url=url)
    except SourceError:
        return
    wl = src.options["protocol_whitelist"].split(",")
    assert "file" not in wl and "pipe" not in wl and "concat" not in wl
    assert src.url == url and src.format in ("flv", "rtsp", "mpegts", "hls")
    assert "@" not in src.shown and "?" not in src.shown


# ----- pipe -----------------------------------------------------------------------------------
@given(st.lists(st.tuples(st.sampled_from([pipe.MEDIA, pipe.STATUS]), st.binary(max_size=300)), max_size=20),
       st.lists(st.integers(1, 50), min_size=1, max_size=10))
def test_pipe_frames_survive_any_split(frames: list, cuts: list[int]) -> None:
    data = b"".join(pipe.encode(t, b) for t, b in frames)
    r = pipe.FrameReader()
    got: list = []
    pos = i = 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        got += r.feed(data[pos:pos + step])
        pos, i = pos + step, i + 1
    assert [(f.type, f.body) for f in got] == frames and r.pending == 0


@given(st.binary(max_size=200))
def test_pipe_garbage_is_a_pipe_error_or_waits(data: bytes) -> None:
    r = pipe.FrameReader()
    try:
        for fr in r.feed(data):
            if fr.type == pipe.STATUS:
                try:
                    fr.status()
                except pipe.PipeError:
                    pass
    except pipe.PipeError:
        pass


def test_pipe_limits() -> None:
    with pytest.raises(pipe.PipeError):
        pipe.FrameReader().feed(b"S" + (pipe.MAX_STATUS_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(pipe.PipeError):
        pipe.FrameReader().feed(b"X\0\0\0\0")
    with pytest.raises(pipe.PipeError):
        pipe.FrameReader().feed(pipe.encode(pipe.STATUS, b"[1]"))[0].status()
    assert pipe.FrameReader().feed(pipe.encode_status({"event": "ended"}))[0].status() == {"event": "ended"}


# ----- supervisor -----------------------------------------------------------------------------
def test_supervisor_backoff_restart_generations_and_timestamps() -> None:
    sup = Supervisor()
    assert sup.poll(0.0) is None and sup.status(0.0)["state"] == "idle"
    sup.start(parse_source(url="rtmp://h/live/k"), 0.0)
    s1 = sup.poll(0.0)
    assert s1 is not None and s1.spec["generation"] == GENERATION_FIRST and s1.spec["ts_base_us"] == 0
    assert sup.poll(0.0) is None  # one worker at a time
    # it fails to open: backoff 1 s, then 2 s, 4 s ... at most 30 s; the error stays
    sup.on_status({"event": "error", "code": "refused", "vi": "từ chối", "en": "refused"}, 0.1)
    waits = []
    now = 0.1
    for _ in range(8):
        sup.on_exit(now)
        assert sup.state == "retrying" and sup.status(now)["error"]["code"] == "refused"
        at = sup.next_spawn_at()
        waits.append(round(at - now, 3))
        assert sup.poll(at - 0.01) is None
        now = at
        assert sup.poll(now) is not None
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0] and max(waits) == BACKOFF_MAX_S
    assert sup.restarts == 8
    # media flows: live, error cleared; timestamps noted
    sup.on_media(None, now)
    sup.on_media(5_000_000, now + 0.1)
    assert sup.live(now + 0.2) and sup.status(now + 0.2)["error"] is None
    assert not sup.live(now + 10) and sup.status(now + 10)["state"] == "stalled"
    # a run live for long resets the backoff; the next run starts after the last timestamp
    sup.on_status({"event": "ended", "detail": "eof"}, now + 20)
    sup.on_exit(now + 20)
    assert sup.next_spawn_at() == now + 21 and sup.status(now + 20)["error"]["code"] == "ended"
    s = sup.poll(now + 21)
    assert s.spec["ts_base_us"] == 5_000_000 + TS_GAP_US and s.spec["generation"] == (GENERATION_FIRST + 9) & 0xFF
    sup.stop()
    sup.on_exit(now + 22)
    assert sup.state == "idle" and sup.poll(now + 100) is None


def test_supervisor_listen_restarts_quickly_after_a_push_ends() -> None:
    sup = Supervisor()
    sup.start(parse_source(listen=1935), 0.0)
    sup.poll(0.0)
    sup.on_media(0, 1.0)
    sup.on_exit(3.0)
    assert sup.next_spawn_at() == 3.5


def test_supervisor_listens_again_at_once_after_the_gate_refused_a_pusher_and_says_why() -> None:
    sup = Supervisor()
    sup.start(parse_source(listen=1935), 0.0)
    sup.poll(0.0)
    sup.on_status({"event": "error", "code": "other", "vi": "lỗi", "en": "error while reading the source"}, 1.0)
    sup.on_exit(2.0, pusher_refused=True)
    assert sup.next_spawn_at() == 2.5 and sup.error["code"] == "pusher_refused" and sup.error["vi"]
    sup.poll(2.5)  # a listen run that failed on its own (no pusher refused) backs off as before
    sup.on_exit(3.0)
    assert sup.next_spawn_at() > 3.5 and sup.error["code"] == "pusher_refused"


def test_configs_from_the_worker_are_the_presenters_shape() -> None:
    """What players decode: the same JSON keys the presenter page sends (no description for VP8)."""
    pytest.importorskip("av")
    from meshmeet.ingest.mesh_encoder import MeshEncoder

    enc = MeshEncoder(generation=GENERATION_FIRST)
    cfgs = [C.parse(m) for m in enc.configs()]
    assert [(c.track, c.layer, c.generation) for c in cfgs] == [(0, 0, 100), (1, 0, 100), (1, 1, 100)]
    assert cfgs[0].config == {"codec": "opus", "numberOfChannels": 1, "sampleRate": 48000}
    assert cfgs[1].config == {"codec": "vp8", "codedHeight": 360, "codedWidth": 640}
    assert cfgs[2].config == {"codec": "vp8", "codedHeight": 180, "codedWidth": 320}


def test_pipe_vectors_in_the_doc() -> None:

    vectors = doc_json_blocks("protocol/ingest.md", "ingest-pipe-vectors")[0]
    assert len(vectors) == 3
    for v in vectors:
        frames = pipe.FrameReader().feed(bytes.fromhex(v["hex"]))
        assert len(frames) == 1 and frames[0].type == v["type"].encode()
        if "status" in v:
            assert frames[0].status() == v["status"]
            assert pipe.encode_status(v["status"]).hex() == v["hex"]
        else:
            assert frames[0].body.hex() == v["body_hex"]
            assert pipe.encode(pipe.MEDIA, bytes.fromhex(v["body_hex"])).hex() == v["hex"]
            C.parse(frames[0].body)  # a valid media message
