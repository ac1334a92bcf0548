"""MediaHub over real WebSockets on loopback (no browser): fan-out, configs first, keyframe
requests to the presenter, per-hall rate caps, recording and replay."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiohttp

from browser.media_fixtures import AppThread
from meshmeet.media import chunk as C
from meshmeet.web.media_hub import MediaHub

CFG_A = C.encode(C.DecoderConfig(0, 0, 1, {"codec": "opus", "sampleRate": 48000, "numberOfChannels": 1}))
CFG_V = C.encode(C.DecoderConfig(1, 0, 1, {"codec": "vp8", "codedWidth": 640, "codedHeight": 360}))


def chunk(track: int, seq: int, key: bool = True, size: int = 40) -> bytes:
    return C.encode(C.Chunk(track, 0, 0, key, 1, seq, seq * 20000, 20000, bytes(size)))


async def presenter(http: aiohttp.ClientSession, base: str) -> aiohttp.ClientWebSocketResponse:
    """A presenter page's WebSocket that has sent its audio and video decoder configs."""
    pres = await http.ws_connect(base + "/media/ws/present")
    await pres.send_bytes(CFG_A)
    await pres.send_bytes(CFG_V)
    return pres


async def read_media(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[C.MediaMessage]:
    out: list[C.MediaMessage] = []
    while len(out) < n:
        m = await asyncio.wait_for(ws.receive(), 10)
        if m.type == aiohttp.WSMsgType.BINARY:
            out.append(C.parse(m.data))
        elif m.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(m)
    return out


def test_fan_out_configs_first_and_keyframe_request_reaches_presenter(tmp_path: Path) -> None:
    with AppThread(lambda: MediaHub(recordings_dir=tmp_path, meeting_id="m2")) as app:
        async def main() -> None:
            base = f"http://127.0.0.1:{app.port}"
            async with aiohttp.ClientSession() as http:
                pres = await presenter(http, base)
                rogue = await http.ws_connect(base + "/media/ws/present")
                await rogue.send_bytes(b"\x09garbage")  # counted; closes that socket only
                closed = await asyncio.wait_for(rogue.receive(), 10)
                assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1008
                halls = [await http.ws_connect(base + "/media/ws/hall") for _ in range(3)]
                # the joiners' keyframe request is merged into one for the presenter
                req = await asyncio.wait_for(pres.receive(), 10)
                assert C.parse(req.data) == C.KeyframeRequest(0)
                await pres.send_bytes(chunk(1, 0, key=True))
                for i in range(5):
                    await pres.send_bytes(chunk(0, i))
                for h in halls:
                    got = await read_media(h, 8)
                    assert got[:2] == [C.parse(CFG_A), C.parse(CFG_V)]
                    assert [m.seq for m in got[2:] if m.track == 0] == [0, 1, 2, 3, 4]
                    assert [m.keyframe for m in got[2:] if m.track == 1] == [True]
                st = await (await http.get(base + "/media/stats")).json()
                assert st["subscribers"] == 3 and {lk["layer"] for lk in st["links"]} == {"high"}
                for h in halls:
                    await h.close()
                await pres.close()
        asyncio.run(main())
        assert app.call(lambda: app.hub.format_errors) == 1
        app.call(lambda: app.hub.recording.recorder.sync(0.0))
    assert (tmp_path / "m2.mmrec").stat().st_size > 100


def test_replay_plays_a_recording_back(tmp_path: Path) -> None:
    from meshmeet.recording.recorder import Recorder

    rec = Recorder(open(tmp_path / "old.mmrec", "ab"), now=0.0)
    msgs = [CFG_A] + [chunk(0, i) for i in range(10)]
    for i, m in enumerate(msgs):
        rec.add(m, i * 0.01)
    rec.close()
    with AppThread(lambda: MediaHub(recordings_dir=tmp_path)) as app:
        async def main() -> None:
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{app.port}"
                ws = await http.ws_connect(base + "/media/ws/replay/old")
                got = [m.data async for m in ws if m.type == aiohttp.WSMsgType.BINARY]
                assert got == msgs
                r = await http.get(base + "/media/ws/replay/nope")
                assert r.status == 404
                r = await http.get(base + "/media/ws/replay/..%2Fx")
                assert r.status == 404
                page = await http.get(base + "/media/hall?replay=old")
                assert page.status == 200 and "Chỉ âm thanh" in await page.text()
        asyncio.run(main())


def test_rate_capped_hall_sheds_video_other_hall_does_not() -> None:
    with AppThread(MediaHub) as app:
        async def main() -> None:
            base = f"http://127.0.0.1:{app.port}"
            async with aiohttp.ClientSession() as http:
                pres = await presenter(http, base)
                weak = await http.ws_connect(base + "/media/ws/hall")
                good = await http.ws_connect(base + "/media/ws/hall")
                counts = {"weak": [0, 0], "good": [0, 0]}

                async def reader(name: str, ws: aiohttp.ClientWebSocketResponse) -> None:
                    async for m in ws:
                        if m.type == aiohttp.WSMsgType.BINARY and m.data[0] in (C.KIND_CHUNK, C.KIND_FRAGMENT):
                            counts[name][0 if m.data[0] == C.KIND_CHUNK and m.data[1] >> 6 == 0 else 1] += 1

                tasks = [asyncio.create_task(reader("weak", weak)), asyncio.create_task(reader("good", good))]
                app.call(lambda: app.hub.set_rate_cap("hall-1", 64_000))
                for i in range(150):  # 3 s: audio 50/s, 640x360 video 20/s at ~400 kbit/s
                    await pres.send_bytes(chunk(0, i, size=60))
                    if i % 5 in (0, 2):
                        await pres.send_bytes(chunk(1, i, key=i % 100 == 0 or i == 0, size=2500))
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                for t in tasks:
                    t.cancel()
                st = app.call(app.hub.stats)
                layers = {lk["peer"]: lk["layer"] for lk in st["links"]}
                assert layers == {"hall-1": "audio", "hall-2": "high"}
                assert counts["weak"][0] >= 140 and counts["good"][0] >= 140  # audio kept flowing to both
                assert counts["good"][1] > 3 * counts["weak"][1]
        asyncio.run(main())


def test_recorder_waits_for_a_chunk_and_follows_a_replaced_file(tmp_path: Path) -> None:
    from meshmeet.recording.recorder import MAGIC, read_records

    hub = MediaHub(recordings_dir=tmp_path, meeting_id="m3")
    path = tmp_path / "m3.mmrec"
    hub.recording.add(CFG_A, 0.0)  # the holder's config repeats alone write no file
    hub.recording.add(CFG_A, 5.0)
    assert not path.exists()
    hub.recording.add(chunk(0, 0), 6.0)
    hub.recording.recorder.sync(6.0)
    assert [r.data for r in read_records(path.read_bytes())] == [CFG_A, chunk(0, 0)]
    fetched = MAGIC + b"\0\0\0\x01" + bytes(8) + b"\x02"  # recording sync renames a fetched copy over it
    (tmp_path / "m3.mmrec.part").write_bytes(fetched)
    (tmp_path / "m3.mmrec.part").replace(path)
    hub.recording.add(chunk(0, 1), 6.5)  # checked at most once a second: still the old file
    hub.recording.add(chunk(0, 2), 7.5)
    hub.recording.recorder.sync(7.5)
    data = path.read_bytes()
    assert data.startswith(fetched) and [r.data for r in read_records(data)][-1] == chunk(0, 2)


def test_audio_rate_request_reaches_the_presenter() -> None:
    """A hall link that cannot carry the audio at audio-only: the presenter is asked for a lower bitrate
    (standalone hub); in node mode a request fed from the node goes to the presenter page as is."""
    with AppThread(MediaHub) as app:
        async def main() -> None:
            base = f"http://127.0.0.1:{app.port}"
            async with aiohttp.ClientSession() as http:
                pres = await presenter(http, base)
                weak = await http.ws_connect(base + "/media/ws/hall")
                asked: list[C.MediaMessage] = []

                async def drain(ws: aiohttp.ClientWebSocketResponse, keep: list | None) -> None:
                    async for m in ws:
                        if keep is not None and m.type == aiohttp.WSMsgType.BINARY:
                            keep.append(C.parse(m.data))

                tasks = [asyncio.create_task(drain(pres, asked)), asyncio.create_task(drain(weak, None))]
                app.call(lambda: app.hub.set_rate_cap("hall-1", 24_000))  # < 24 kbit/s Opus + headers
                for i in range(150):
                    await pres.send_bytes(chunk(0, i, size=60))  # 24 kbit/s Opus
                    if i % 5 in (0, 2):
                        await pres.send_bytes(chunk(1, i, key=i == 0, size=2500))
                    await asyncio.sleep(0.02)
                for t in tasks:
                    t.cancel()
                rates = [m.kbps for m in asked if isinstance(m, C.AudioRateRequest)]
                assert rates and all(k <= 16 for k in rates), asked
                st = app.call(app.hub.stats)
                assert st["links"][0]["layer"] == "audio" and st["links"][0]["audio_request_kbps"] <= 16
        asyncio.run(main())

    sent: list[bytes] = []
    upstream_got = threading.Event()

    async def upstream(data: bytes) -> None:
        sent.append(data)
        upstream_got.set()

    with AppThread(lambda: MediaHub(upstream=upstream)) as app:
        async def node_mode() -> None:
            async with aiohttp.ClientSession() as http:
                pres = await http.ws_connect(f"http://127.0.0.1:{app.port}/media/ws/present")
                # The hub reads a presenter's messages only after it has registered the socket, so the
                # config arriving upstream is the event that says requests can now reach this page.
                await pres.send_bytes(CFG_A)
                await asyncio.get_running_loop().run_in_executor(None, upstream_got.wait)
                assert sent == [CFG_A]
                req = C.encode(C.AudioRateRequest(12))
                app.call(lambda: app.hub.feed(req))
                app.call(lambda: app.hub.feed(b"\x06\x00\x01"))  # below Opus's minimum: dropped, counted
                got = await asyncio.wait_for(pres.receive(), 10)
                assert got.data == req
                await pres.close()
        asyncio.run(node_mode())
        assert app.call(lambda: app.hub.format_errors) == 1
