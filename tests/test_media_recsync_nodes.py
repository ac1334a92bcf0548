"""Recording sync in real `meshmeet run` processes: a meeting HQ recorded while hall B was down
reaches B after B starts, byte-identical, and B's /media/hall?replay=ID plays it back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from meshmeet.media import chunk as C
from meshmeet.media.recorder import read_records
from nodeproc import NodeProcess, make_commune, meshmeet, stop_all, wait_for
from test_media_node import OPUS, VP8, audio, video, ws_url

pytestmark = pytest.mark.slow


async def present(node: NodeProcess, n_audio: int) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(node, "/media/ws/present")) as ws:
        await ws.send_bytes(OPUS)
        await ws.send_bytes(VP8)
        for i in range(n_audio):
            await ws.send_bytes(audio(i, b"rec"))
            if i % 2 == 0:
                await ws.send_bytes(video(i // 2, b"rec"))
            await asyncio.sleep(0.02)


async def replay(node: NodeProcess, meeting: str, n: int) -> list[bytes]:
    got: list[bytes] = []
    async with aiohttp.ClientSession() as s:
        async with s.get(node.url.rstrip("/") + f"/media/hall?replay={meeting}") as page:
            assert page.status == 200 and "<html" in (await page.text()).lower()
        async with s.ws_connect(ws_url(node, f"/media/ws/replay/{meeting}")) as ws:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    got.append(msg.data)
                    if len(got) == n:
                        break
    return got


def recordings(node_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (node_dir / "recordings").glob("*.mmrec")}


def test_hall_down_during_the_meeting_gets_the_recording_after_it_starts(tmp_path: Path) -> None:
    hq_dir, invites = make_commune(tmp_path, 1)
    nodes: list[NodeProcess] = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        b_dir = invites[0][0]
        meshmeet("join", "--data-dir", str(b_dir), invites[0][1], "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        asyncio.run(present(hq, 150))  # the meeting, while B is down
        wait_for(lambda: recordings(hq_dir) and hq.status()["media"]["recordings"]["local"] == 1,
                 "HQ lists its recording once media stopped")
        (name, data), = recordings(hq_dir).items()
        recs = list(read_records(data))
        assert sum(r.data[0] == C.KIND_CHUNK for r in recs) == 150 + 75

        b = NodeProcess(b_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(b)
        wait_for(lambda: recordings(b_dir).get(name) == data, "B fetched HQ's recording, byte-identical")
        st = b.status()["media"]["recordings"]
        assert st["counters"]["fetched"] == 1 and st["counters"]["verify_failed"] == 0 and st["fetching"] == []
        assert not list((b_dir / "recordings").glob("*.part"))
        assert hq.status()["media"]["recordings"]["counters"]["pieces_out"] >= 1

        meeting = name.removesuffix(".mmrec")
        got = asyncio.run(replay(b, meeting, 20))
        assert got == [r.data for r in recs[:20]]
        assert recordings(hq_dir)[name] == data  # HQ's copy untouched
    finally:
        stop_all(nodes)
