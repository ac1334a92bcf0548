"""Media in real `meshmeet run` processes (no browser): HQ -> relay hall -> end hall on loopback.

Python WebSocket clients stand in for the presenter and hall pages and speak the same chunk
format. Checks: chunks cross two relay hops in order, status "media", the floor moving to a hall
and back (with refusals where authority is missing), the test-only rate cap, and recordings.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from meshmeet.media import chunk as C
from meshmeet.media import floor as F
from meshmeet.membership.identity import KeyPair
from meshmeet.recording.recorder import read_records
from browser.node_chain import api_post, media, node_chain
from nodeproc import NodeProcess, make_commune, meshmeet, wait_for

pytestmark = pytest.mark.slow

OPUS = C.encode_config(C.DecoderConfig(C.TRACK_AUDIO, 0, 1, {"codec": "opus", "numberOfChannels": 1, "sampleRate": 48000}))
VP8 = C.encode_config(C.DecoderConfig(C.TRACK_VIDEO, C.LAYER_HIGH, 1, {"codec": "vp8", "codedWidth": 640, "codedHeight": 360}))


def audio(seq: int, tag: bytes = b"") -> bytes:
    return C.encode(C.Chunk(C.TRACK_AUDIO, 0, 0, True, 1, seq, seq * 20_000, 20_000, tag + bytes(40)))


def video(seq: int, tag: bytes = b"") -> bytes:
    return C.encode(C.Chunk(C.TRACK_VIDEO, C.LAYER_HIGH, 0, seq % 10 == 0, 1, seq, seq * 50_000, 50_000, tag + bytes(900)))


def ws_url(node: NodeProcess, path: str) -> str:
    return node.url.replace("http://", "ws://").rstrip("/") + path


async def present_and_listen(presenter: NodeProcess, hall: NodeProcess, tag: bytes, n_audio: int = 100) -> list[C.Chunk]:
    """Send configs, audio (and some video) at the presenter's node; collect what the hall gets."""
    import aiohttp

    got: list[C.Chunk] = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(ws_url(hall, "/media/ws/hall")) as hall_ws, \
                s.ws_connect(ws_url(presenter, "/media/ws/present")) as pres_ws:

            async def listen() -> None:
                from meshmeet.media.relay import MediaRelay

                reasm = MediaRelay(source="x", keep_accepted=True)  # joins fragments like the page does
                async for msg in hall_ws:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        continue
                    reasm.receive("x", msg.data, 0.0)
                    for whole in reasm.take_accepted():
                        m = C.parse(whole)
                        if isinstance(m, C.Chunk) and m.payload.startswith(tag):
                            got.append(m)
                            if m.seq == n_audio - 1:
                                return

            task = asyncio.create_task(listen())
            await pres_ws.send_bytes(OPUS)
            await pres_ws.send_bytes(VP8)
            for i in range(n_audio):
                await pres_ws.send_bytes(audio(i, tag))
                if i % 2 == 0:
                    await pres_ws.send_bytes(video(i // 2, tag))
                await asyncio.sleep(0.02)
            try:
                await asyncio.wait_for(task, 20)
            except asyncio.TimeoutError:
                pass
    return got


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MESHMEET_TEST_HOOKS", "1")
    with node_chain(tmp_path) as nodes:
        yield nodes


def test_chain_floor_rate_cap_and_recording(chain) -> None:
    hq, relay, end = chain
    m = media(hq)
    assert m["source"] == hq.node_id and m["source_link"] == "presenter"
    assert [link["peer"] for link in m["links"]] == [relay.node_id]
    assert {"peer", "layer", "queue_ms", "estimate_kbps"} <= set(m["links"][0])

    # HQ presents: the end hall gets every audio chunk, in order, through two hops
    got = asyncio.run(present_and_listen(hq, end, b"HQ"))
    seqs = [c.seq for c in got if c.track == C.TRACK_AUDIO]
    assert seqs == list(range(100)), seqs
    assert any(c.track == C.TRACK_VIDEO for c in got)
    wait_for(lambda: media(end)["subscribers"] == 0, "hall page gone from the end hall's stats")

    # the floor goes to the end hall: its presenter reaches HQ; HQ's own presenter is refused
    out = meshmeet("floor", "grant", "Thôn 2", "--data-dir", str(hq.data_dir), "--json")
    assert json.loads(out.stdout)["holder"] == end.node_id
    wait_for(lambda: media(end)["source_link"] == "presenter" and media(hq)["source_link"] == relay.node_id
             and media(relay)["source_link"] == end.node_id, "everyone follows the new holder")
    assert all(media(n)["source"] == end.node_id for n in (hq, relay, end))
    # nodes of this release take the holder's signed beacons (kind 0x17, feature floor-beacons/2); an
    # unsigned one can cross only in the instant before a new link's capabilities arrive
    unsigned0 = {n.node_id: media(n)["floor"]["unsigned_taken"] for n in (hq, relay, end)}
    got = asyncio.run(present_and_listen(end, hq, b"T2"))
    assert [c.seq for c in got if c.track == C.TRACK_AUDIO] == list(range(100))
    refused0 = media(hq)["counters"]["presenter_refused"]
    asyncio.run(present_and_listen(hq, end, b"no", n_audio=5))
    assert media(hq)["counters"]["presenter_refused"] > refused0

    # a hall may not grant the floor
    refused = meshmeet("floor", "grant", "Thôn 1", "--data-dir", str(relay.data_dir), check=False)
    assert refused.returncode != 0 and "floor" in refused.stderr and "Traceback" not in refused.stderr

    # release: HQ (the tree root) speaks again
    meshmeet("floor", "release", "--data-dir", str(hq.data_dir))
    wait_for(lambda: media(end)["source_link"] == relay.node_id and media(hq)["source_link"] == "presenter",
             "floor back at the root")

    # the attack: the end hall (a roster member, the relay's child, off its path to HQ) makes up
    # HQ's beacons with a fresh counter, signed with its own key and in the unsigned 0x11 form, to
    # become the relay's voice-0 source; the relay refuses both and keeps taking media from HQ
    wait_for(lambda: media(relay)["source_link"] == hq.node_id, "the relay's source: HQ")
    seq, refused = media(hq)["floor"]["seq"], media(relay)["counters"]["floor_refused"]
    fake = F.make_beacon(KeyPair.from_seed(bytes(32)), bytes(16), seq, int(time.time()) + 1000)
    for body in (F.encode_signed_beacon(F.SourceBeacon(seq, hq.node_id, fake.counter, fake.signature)),
                 F.encode_beacon(F.SourceBeacon(seq, hq.node_id, fake.counter + 1))):
        api_post(end, "media_test_send", {"peer": relay.node_id, "hex": body.hex()})
    wait_for(lambda: media(relay)["counters"]["floor_refused"] >= refused + 2, "both made-up beacons refused")
    assert media(relay)["source_link"] == hq.node_id
    assert all(media(n)["floor"]["unsigned_taken"] == unsigned0[n.node_id] for n in (hq, relay, end))

    # the test-only rate cap puts the relay -> end link down to audio
    with_cap = meshmeet("status", "--json", "--data-dir", str(relay.data_dir))
    assert json.loads(with_cap.stdout)["media"]["links"]
    import urllib.request

    req = urllib.request.Request(relay.url + "/api/media_test_rate_cap", method="POST", headers=relay.token_header(),
                                 data=json.dumps({"peer": end.node_id, "bps": 16000}).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["peer"] == end.node_id

    async def stream_video() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(hq, "/media/ws/present")) as ws:
            await ws.send_bytes(OPUS)
            await ws.send_bytes(VP8)
            for i in range(150):
                await ws.send_bytes(audio(i, b"cap"))
                await ws.send_bytes(video(i))
                await asyncio.sleep(0.02)
                if i > 40 and any(link["layer"] == "audio" for link in media(relay)["links"]):
                    return

    asyncio.run(stream_video())
    links = {link["peer"]: link for link in media(relay)["links"]}
    assert links[end.node_id]["layer"] == "audio", links
    assert links[hq.node_id]["layer"] != "audio"  # the other link is not affected

    # every node recorded what it relayed
    for n in (hq, relay, end):
        files = list((n.data_dir / "recordings").glob("*.mmrec"))
        assert files, n.data_dir
        recs = list(read_records(files[0].read_bytes()))
        assert any(r.data[0] == C.KIND_CHUNK for r in recs)


def _recorded(node: NodeProcess, name: str) -> list:
    path = node.data_dir / "recordings" / f"{name}.mmrec"
    return list(read_records(path.read_bytes())) if path.exists() else []


def _tagged(records: list, tag: bytes) -> list[C.Chunk]:
    out = []
    for r in records:
        if r.data[0] == C.KIND_CHUNK:
            c = C.parse(r.data)
            if c.payload.startswith(tag):
                out.append(c)
    return out


async def replay_messages(node: NodeProcess, name: str, n: int) -> list[bytes]:
    """The first `n` media messages the node's replay WebSocket plays of recording `name`."""
    import aiohttp

    got: list[bytes] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(node, f"/media/ws/replay/{name}")) as ws:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                got.append(msg.data)
                if len(got) == n:
                    break
    return got


def test_recording_is_named_after_the_started_meeting(chain) -> None:
    """Every node records into MEETING_ID.mmrec for the meeting the chair started, so
    /hall?replay=MEETING_ID works everywhere; the next started meeting gets its own file."""
    hq, relay, end = chain
    first = api_post(hq, "meeting_create", {"title": "Họp thôn lần 1"})["id"]
    api_post(hq, "meeting_update", {"id": first, "status": "started"})
    wait_for(lambda: all(media(n)["recording"].endswith(f"{first}.mmrec") for n in (hq, relay, end)),
             "every node names its recording after the started meeting")
    got = asyncio.run(present_and_listen(hq, end, b"M1"))
    assert [c.seq for c in got if c.track == C.TRACK_AUDIO] == list(range(100))
    for n in (hq, relay, end):  # the tail reaches the disk within a second (recorder.py)
        wait_for(lambda n=n: [c.seq for c in _tagged(_recorded(n, first), b"M1") if c.track == C.TRACK_AUDIO]
                 == list(range(100)), "the whole talk in the first meeting's file", proc=n)
        assert _recorded(n, first)[0].data[0] == C.KIND_CONFIG  # decodable from its start
    played = asyncio.run(replay_messages(end, first, 20))
    assert len(played) == 20 and any(d[0] == C.KIND_CHUNK for d in played)

    # the chair ends the first meeting and starts a second one: the next talk goes to a new file
    second = api_post(hq, "meeting_create", {"title": "Họp thôn lần 2"})["id"]
    api_post(hq, "meeting_update", {"id": first, "status": "ended"})
    api_post(hq, "meeting_update", {"id": second, "status": "started"})
    wait_for(lambda: all(media(n)["recording"].endswith(f"{second}.mmrec") for n in (hq, relay, end)),
             "every node moves to the second meeting's recording")
    got = asyncio.run(present_and_listen(hq, end, b"M2"))
    assert [c.seq for c in got if c.track == C.TRACK_AUDIO] == list(range(100))
    for n in (hq, relay, end):
        wait_for(lambda n=n: [c.seq for c in _tagged(_recorded(n, second), b"M2") if c.track == C.TRACK_AUDIO]
                 == list(range(100)), "the second talk in the second meeting's file", proc=n)
        recs = _recorded(n, second)
        assert recs[0].data[0] == C.KIND_CONFIG and not _tagged(recs, b"M1")
        assert not _tagged(_recorded(n, first), b"M2")


def test_rate_cap_hook_is_off_without_the_env(tmp_path: Path) -> None:
    os.environ.pop("MESHMEET_TEST_HOOKS", None)
    hq_dir, _ = make_commune(tmp_path, 0)
    hq = NodeProcess(hq_dir, mdns=False)
    try:
        import urllib.error
        import urllib.request

        for hook in ("media_test_rate_cap", "media_test_send"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(urllib.request.Request(hq.url + "/api/" + hook, data=b"{}",
                                                              headers=hq.token_header()), timeout=10)
            assert e.value.code == 404
        assert hq.status()["media"]["source"] == hq.node_id
        out = meshmeet("floor", "status", "--data-dir", str(hq_dir))
        assert hq.status()["node"]["site"] in out.stdout
    finally:
        hq.stop()
