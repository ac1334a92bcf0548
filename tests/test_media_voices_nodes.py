"""Voices in real `meshmeet run` processes (no browser): HQ -> relay hall -> end hall on loopback.

Python WebSocket clients stand in for the presenter and hall pages. The floor goes to the end hall;
HQ's presenter (the chair, voice 1) and the end hall's (the floor holder, voice 0) speak at once;
the relay hall's page gets both, each with contiguous sequence numbers; HQ's page gets the end
hall's voice once, as voice 0, and no node ever refuses a voice (nobody sent one back towards its
origin). Then the chair allows the relay hall as the extra voice (2), which reaches both other
halls; withdrawn, its presenter is refused again.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from browser.node_chain import api_post, media, node_chain
from meshmeet.media import chunk as C
from nodeproc import NodeProcess, meshmeet, wait_for

pytestmark = pytest.mark.slow

OPUS = C.encode_config(C.DecoderConfig(C.TRACK_AUDIO, 0, 1, {"codec": "opus", "numberOfChannels": 1, "sampleRate": 48000}))
N = 60


def audio(seq: int, tag: bytes) -> bytes:
    return C.encode(C.Chunk(C.TRACK_AUDIO, 0, 0, True, 1, seq, seq * 20_000, 20_000, tag + bytes(40)))


def ws_url(node: NodeProcess, path: str) -> str:
    return node.url.replace("http://", "ws://").rstrip("/") + path


async def speak_and_listen(speakers: dict[NodeProcess, bytes], halls: list[NodeProcess], base: int = 0) -> list[list[C.Chunk]]:
    """Every speaker's presenter sends N audio chunks tagged with its bytes, at once; each hall
    page collects the audio chunks (and configs) it gets. `base`: the first sequence number (a page
    that starts again goes on counting: relays drop an audio chunk they relayed lately as a repeat)."""
    import aiohttp

    got: list[list] = [[] for _ in halls]
    async with aiohttp.ClientSession() as s:
        hall_ws = [await s.ws_connect(ws_url(h, "/media/ws/hall")) for h in halls]
        pres_ws = [(await s.ws_connect(ws_url(n, "/media/ws/present")), tag) for n, tag in speakers.items()]

        async def listen(i: int) -> None:
            async for msg in hall_ws[i]:
                if msg.type == aiohttp.WSMsgType.BINARY and msg.data[0] in (C.KIND_CHUNK, C.KIND_CONFIG):
                    m = C.parse(msg.data)
                    if m.track == C.TRACK_AUDIO:
                        got[i].append(m)

        tasks = [asyncio.create_task(listen(i)) for i in range(len(halls))]
        for ws, _ in pres_ws:
            await ws.send_bytes(OPUS)
        for seq in range(base, base + N):
            for ws, tag in pres_ws:
                await ws.send_bytes(audio(seq, tag))
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        for t in tasks:
            t.cancel()
        for ws in hall_ws + [w for w, _ in pres_ws]:
            await ws.close()
    return got


def by_voice(got: list, tag: bytes) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for m in got:
        if isinstance(m, C.Chunk) and m.payload.startswith(tag):
            out.setdefault(m.layer, []).append(m.seq)
    return out


@pytest.fixture
def chain(tmp_path: Path):
    with node_chain(tmp_path) as nodes:
        yield nodes


def test_chair_and_floor_holder_speak_at_once_and_an_extra_voice(chain) -> None:
    hq, relay, end = chain
    out = meshmeet("floor", "grant", "Thôn 2", "--data-dir", str(hq.data_dir), "--json")
    assert json.loads(out.stdout)["holder"] == end.node_id
    wait_for(lambda: media(relay)["source_link"] == end.node_id and media(hq)["source_link"] == relay.node_id
             and all(media(n)["floor"]["voices"]["links"] for n in (hq, relay, end)),
             "the floor at the end hall; every link knows voices")
    speakers = media(end)["floor"]["voices"]["speakers"]
    assert [(s["voice"], s["node"]) for s in speakers] == [(0, end.node_id), (1, hq.node_id)]

    at_relay, at_hq, at_end = asyncio.run(speak_and_listen({hq: b"HQ", end: b"T2"}, [relay, hq, end]))
    assert by_voice(at_relay, b"T2") == {0: list(range(N))}  # the floor holder, as voice 0, in order
    assert by_voice(at_relay, b"HQ") == {1: list(range(N))}  # the chair at the same time, as voice 1
    assert by_voice(at_hq, b"T2") == {0: list(range(N))}  # the holder's voice reaches HQ once, as itself
    assert by_voice(at_end, b"HQ") == {1: list(range(N))}
    assert any(isinstance(m, C.DecoderConfig) and m.layer == 1 for m in at_relay)  # voice 1's own config
    for n in (hq, relay, end):  # nothing came back towards its origin, nothing was refused
        assert media(n)["counters"]["voices_refused"] == 0 and media(n)["counters"]["presenter_refused"] == 0

    # a hall may not allow a voice
    with pytest.raises(Exception):
        api_post(relay, "floor", {"action": "allow", "site": "Thôn 1"})
    # the chair allows the relay hall: it speaks as voice 2 and both other sites hear it
    st = api_post(hq, "floor", {"action": "allow", "site": "Thôn 1"})
    assert st["voices"]["extra"] == relay.node_id
    wait_for(lambda: media(end)["floor"]["voices"]["source_link"] == relay.node_id
             and media(hq)["floor"]["voices"]["source_link"] == relay.node_id, "voice beacons from the relay hall")
    at_hq, at_end = asyncio.run(speak_and_listen({relay: b"T1", end: b"T2"}, [hq, end], base=N))
    assert by_voice(at_hq, b"T1") == {2: list(range(N, 2 * N))} and by_voice(at_end, b"T1") == {2: list(range(N, 2 * N))}
    assert by_voice(at_hq, b"T2") == {0: list(range(N, 2 * N))}

    # withdrawn: the relay hall's presenter is refused again
    api_post(hq, "floor", {"action": "disallow"})
    wait_for(lambda: media(relay)["floor"]["voices"]["extra"] is None, "the extra voice withdrawn")
    asyncio.run(speak_and_listen({relay: b"no"}, [end]))
    assert media(relay)["counters"]["presenter_refused"] >= N
