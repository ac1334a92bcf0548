"""The ingest in real `meshmeet run` processes: an upstream conference made here with PyAV (test
pattern + 440 Hz tone, H.264/AAC) reaches a hall's player and both recordings.

HQ and one hall on loopback. A Python subscriber on the hall's /media/ws/hall decodes the chunks
with PyAV (as the hall page does with WebCodecs) and an FFT finds the tone. Pushed over RTMP to
the ingest's listen port (and again after the upstream dropped: the ingest restarts by itself),
pulled over HLS from files a local HTTP server serves, pushed over RTSP to its listen mode; a dead
or wrong URL gives a bilingual error and /present still works.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("av")
pytest.importorskip("numpy")

from meshmeet.media import chunk as C  # noqa: E402
from meshmeet.recording.recorder import read_records  # noqa: E402
from browser.node_chain import api_post, media  # noqa: E402
from ingest_tools import TONE_HZ, HallSubscriber, tone_hz  # noqa: E402
from nodeproc import NodeProcess, meshmeet, start_commune, stop_all, wait_for  # noqa: E402

pytestmark = pytest.mark.slow
TOOLS = str(Path(__file__).parent / "ingest_tools.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ws_url(node: NodeProcess, path: str) -> str:
    return node.url.replace("http://", "ws://").rstrip("/") + path


def push(url: str, fmt: str, seconds: float, *opts: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, TOOLS, url, fmt, str(seconds), "640x360", *opts],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ingest(node: NodeProcess) -> dict:
    return node.status()["ingest"]


@pytest.fixture
def pair(tmp_path: Path):
    nodes: list[NodeProcess] = []
    try:
        hq, (hall,) = start_commune(tmp_path, 1, nodes)
        wait_for(lambda: media(hall)["source_link"] == hq.node_id, "source beacons from HQ")
        yield hq, hall
    finally:
        try:
            api_post(nodes[0], "ingest", {"action": "stop"})
        except Exception:  # noqa: BLE001
            pass
        stop_all(nodes)


def heard(sub: HallSubscriber, gen: int, frames: int = 20, audio: int = 100) -> bool:
    return sub.frames.get(gen, 0) >= frames and sub.audio_chunks.get(gen, 0) >= audio


def check_tone(sub: HallSubscriber) -> None:
    pcm = sub.pcm[-48000:]
    assert len(pcm) >= 24000, len(pcm)
    assert abs(tone_hz(pcm) - TONE_HZ) < 5, tone_hz(pcm)


def recording_audio_generations(node: NodeProcess) -> dict[int, int]:
    path = Path(media(node)["recording"])
    out: dict[int, int] = {}
    for rec in read_records(path.read_bytes()):
        if rec.data[0] == C.KIND_CHUNK:
            c = C.parse(rec.data)
            out[c.generation] = out.get(c.generation, 0) + 1
    return out


def test_rtmp_push_reaches_the_hall_and_restarts_after_a_drop(pair) -> None:
    hq, hall = pair
    port = free_port()
    out = meshmeet("ingest", "--listen", str(port), "--bind", "127.0.0.1", "--data-dir", str(hq.data_dir), "--json")
    st = json.loads(out.stdout)
    assert st["listen"] is True and st["source"] == f"rtmp listen 127.0.0.1:{port}"
    key = st["push"]["key"]
    assert st["push"]["path"] == f"/live/{key}" and key not in json.dumps(ingest(hq))  # never in the open status
    wait_for(lambda: ingest(hq)["state"] in ("starting", "retrying"), "ingest listening")
    gen_stranger = wait_for(lambda: ingest(hq)["generation"], "a generation")

    # a pusher without the key is refused at the gate: nothing of it reaches FFmpeg or any hall
    stranger = push(f"rtmp://127.0.0.1:{port}/live/stream", "flv", 3)
    assert stranger.wait(timeout=60) != 0
    assert ingest(hq)["gate"]["refused"] >= 1 and "stream key" in ingest(hq)["gate"]["last_refused"]
    assert ingest(hq)["state"] != "live" and media(hall)["counters"]["chunks_in"] == 0
    # FFmpeg had the stranger's handshake: its run ends, the chair is told why, it listens again at once
    wait_for(lambda: (ingest(hq)["error"] or {}).get("code") == "pusher_refused", "the refusal shown")
    gen0 = wait_for(lambda: (g := ingest(hq)["generation"]) != gen_stranger and g, "listening again")

    sub = HallSubscriber()
    src = push(f"rtmp://127.0.0.1:{port}/live/{key}", "flv", 12)
    asyncio.run(sub.listen(ws_url(hall, "/media/ws/hall"), lambda s: heard(s, gen0)))
    assert heard(sub, gen0), (sub.frames, sub.audio_chunks, ingest(hq))
    assert sub.errors == 0
    check_tone(sub)
    st = ingest(hq)
    assert st["state"] == "live" and st["video"].startswith("h264") and st["audio"].startswith("aac"), st
    # the ingest is HQ's presenter: the hub's source, the same floor path as /present
    assert media(hq)["source_link"] == "presenter"
    assert media(hall)["counters"]["chunks_in"] > 0
    # while the ingest is live, a /present page at HQ is held back (two sources would garble players)
    asyncio.run(_present_a_little(hq))
    assert ingest(hq)["counters"]["presenter_held"] >= 6
    src.wait(timeout=60)

    # the upstream dropped: the ingest says so, listens again, and a new push is relayed
    wait_for(lambda: ingest(hq)["state"] == "retrying" and ingest(hq)["error"]["code"] == "ended", "the drop noticed")
    wait_for(lambda: ingest(hq)["generation"] != gen0, "the ingest restarted by itself")
    gen1 = ingest(hq)["generation"]
    # the floor decides for the ingest as for /present: with the floor at the hall, HQ's ingest is
    # refused; taken back, it is heard again
    refused0 = media(hq)["counters"]["presenter_refused"]
    meshmeet("floor", "grant", "Thôn 1", "--data-dir", str(hq.data_dir))
    wait_for(lambda: media(hall)["source_link"] == "presenter", "the hall holds the floor")
    src = push(f"rtmp://127.0.0.1:{port}/live/{key}", "flv", 40)  # cut below, once heard
    wait_for(lambda: media(hq)["counters"]["presenter_refused"] > refused0 + 20, "the ingest refused without the floor")
    meshmeet("floor", "release", "--data-dir", str(hq.data_dir))
    sub2 = HallSubscriber()
    asyncio.run(sub2.listen(ws_url(hall, "/media/ws/hall"), lambda s: heard(s, gen1, 10, 50)))
    assert heard(sub2, gen1, 10, 50), (sub2.frames, sub2.audio_chunks, ingest(hq))
    check_tone(sub2)
    assert ingest(hq)["restarts"] >= 1
    src.kill()
    src.wait(timeout=60)

    # both runs are in the hall's and HQ's recordings
    for node in (hq, hall):
        gens = wait_for(lambda: (g := recording_audio_generations(node)).get(gen1, 0) > 0 and g, "recorded")
        assert gens.get(gen0, 0) >= 100 and gens.get(gen1, 0) > 0, gens


def test_hls_pull_and_rtsp_push(pair, tmp_path: Path) -> None:
    hq, hall = pair
    hls_dir = tmp_path / "hls"
    hls_dir.mkdir()
    src = push(str(hls_dir / "live.m3u8"), "hls", 14, "hls_time=1", "hls_list_size=6")
    handler = functools.partial(_QuietHandler, directory=str(hls_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait_for(lambda: (hls_dir / "live.m3u8").exists() and "#EXTINF" in (hls_dir / "live.m3u8").read_text(),
                 "the first HLS segment")
        url = f"http://127.0.0.1:{server.server_address[1]}/live.m3u8"
        st = api_post(hq, "ingest", {"action": "start", "url": url})
        assert st["source"] == f"http://127.0.0.1:{server.server_address[1]}/live.m3u8"
        gen = st["generation"] if st["generation"] is not None else wait_for(lambda: ingest(hq)["generation"], "gen")
        sub = HallSubscriber()
        asyncio.run(sub.listen(ws_url(hall, "/media/ws/hall"), lambda s: heard(s, gen, 10, 50)))
        assert heard(sub, gen, 10, 50), (sub.frames, sub.audio_chunks, ingest(hq))
        check_tone(sub)
    finally:
        server.shutdown()
        src.kill()
        src.wait()

    # RTSP: FFmpeg's rtsp listen mode receives a push (ANNOUNCE/RECORD)
    port = free_port()
    key = api_post(hq, "ingest", {"action": "start", "listen": port, "protocol": "rtsp", "bind": "127.0.0.1",
                                  "key": "rtsp-key-0042"})["push"]["key"]
    assert key == "rtsp-key-0042"
    wait_for(lambda: ingest(hq)["source"] == f"rtsp listen 127.0.0.1:{port}" and ingest(hq)["generation"] is not None,
             "rtsp listening")
    gen = ingest(hq)["generation"]
    sub = HallSubscriber()
    src = wait_for(lambda: _rtsp_push(port, key), "the rtsp listener accepting")
    try:
        asyncio.run(sub.listen(ws_url(hall, "/media/ws/hall"), lambda s: any(
            heard(s, g, 10, 50) for g in range(gen, gen + 4))))
        assert any(heard(sub, g, 10, 50) for g in range(gen, gen + 4)), (sub.frames, sub.audio_chunks, ingest(hq))
        check_tone(sub)
    finally:
        src.kill()
        src.wait()


async def _present_a_little(node: NodeProcess) -> None:
    import aiohttp

    from test_media_node import OPUS, audio

    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(node, "/media/ws/present")) as ws:
        await ws.send_bytes(OPUS)
        for i in range(5):
            await ws.send_bytes(audio(i, b"CHAIR"))
        await ws.send_bytes(audio(5, b"CHAIR"))
        await asyncio.sleep(0.5)


def _rtsp_push(port: int, key: str) -> subprocess.Popen | None:
    p = push(f"rtsp://127.0.0.1:{port}/live/{key}", "rtsp", 10, "rtsp_transport=tcp")
    try:
        p.wait(timeout=1.5)  # refused at once while the listener is not up yet
    except subprocess.TimeoutExpired:
        return p
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_dead_or_wrong_url_is_a_bilingual_error_and_present_still_works(pair) -> None:
    hq, hall = pair
    bad = meshmeet("ingest", "ftp://127.0.0.1/x", "--data-dir", str(hq.data_dir), check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "giao thức" in bad.stderr and "unsupported scheme" in bad.stderr
    bad = meshmeet("ingest", "file:///etc/passwd", "--data-dir", str(hq.data_dir), check=False)
    assert bad.returncode != 0 and "unsupported scheme" in bad.stderr

    dead = free_port()
    meshmeet("ingest", f"rtmp://127.0.0.1:{dead}/live/key", "--data-dir", str(hq.data_dir))
    st = wait_for(lambda: (s := ingest(hq))["error"] and s["state"] == "retrying" and s, "the error")
    assert st["error"]["code"] == "refused" and st["error"]["vi"] and st["error"]["en"], st
    assert st["state"] == "retrying" and st["source"] == f"rtmp://127.0.0.1:{dead}/live/…"  # no stream key shown
    text = meshmeet("ingest", "status", "--data-dir", str(hq.data_dir)).stdout
    assert "từ chối" in text and "refused" in text

    # a hall may not ingest
    refused = meshmeet("ingest", "rtmp://127.0.0.1:1/x", "--data-dir", str(hall.data_dir), check=False)
    assert refused.returncode != 0 and "only HQ" in refused.stderr

    # /present at HQ still reaches the hall while the ingest keeps failing
    from test_media_node import present_and_listen

    got = asyncio.run(present_and_listen(hq, hall, b"CHAIR", n_audio=50))
    assert [c.seq for c in got if c.track == C.TRACK_AUDIO] == list(range(50))
    assert ingest(hq)["counters"]["presenter_held"] == 0
    meshmeet("ingest", "stop", "--data-dir", str(hq.data_dir))
    assert ingest(hq)["state"] == "idle"
