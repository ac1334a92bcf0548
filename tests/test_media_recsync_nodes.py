"""Recording sync in real `meshmeet run` processes: a meeting HQ recorded while hall B was down
reaches B after B starts, byte-identical, and B's /media/hall?replay=ID plays it back; and if B
starts while HQ presents the next meeting, B fetches nothing until the live media stops."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from meshmeet.media import chunk as C
from meshmeet.recording.recorder import read_records
from nodeproc import NodeProcess, make_commune, meshmeet, stop_all, wait_for
from test_media_node import OPUS, VP8, audio, replay_messages, video, ws_url

pytestmark = pytest.mark.slow


async def present(node: NodeProcess, n_audio: int | None, tag: bytes = b"rec",
                  stop: threading.Event | None = None, sent: list[int] | None = None) -> None:
    """Configs, then audio every 20 ms (video every other): `n_audio` of them, or until `stop`;
    `sent[0]` counts the audio chunks sent so far."""
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(node, "/media/ws/present")) as ws:
        await ws.send_bytes(OPUS)
        await ws.send_bytes(VP8)
        i = 0
        while (i < n_audio) if n_audio is not None else not (stop and stop.is_set()):
            await ws.send_bytes(audio(i, tag))
            if i % 2 == 0:
                await ws.send_bytes(video(i // 2, tag))
            i += 1
            if sent is not None:
                sent[0] = i
            await asyncio.sleep(0.02)


class Presenter(threading.Thread):
    """present() in a thread until stop(): a live meeting while the test polls the nodes."""

    def __init__(self, node: NodeProcess, tag: bytes) -> None:
        super().__init__(daemon=True)
        self.node, self.tag, self.stopping, self.sent = node, tag, threading.Event(), [0]
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(present(self.node, None, self.tag, self.stopping, self.sent))
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        assert not self.is_alive(), "presenter did not stop"
        assert self.error is None, f"presenter failed: {self.error!r}"


async def replay(node: NodeProcess, meeting: str, n: int) -> list[bytes]:
    """The player page for the recording exists, and its WebSocket plays the first `n` messages."""
    async with aiohttp.ClientSession() as s:
        async with s.get(node.url.rstrip("/") + f"/media/hall?replay={meeting}") as page:
            assert page.status == 200 and "<html" in (await page.text()).lower()
    return await replay_messages(node, meeting, n)


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


def test_no_recording_bytes_move_while_live_media_reaches_the_hall(tmp_path: Path) -> None:
    """HQ records meeting 1 while B is down. A node's meeting id (its recording's name) is the
    date it started on (MediaService.meeting_id), and there is no API to choose another, so
    meeting 1 is moved to the day before and HQ restarted, as if it had been held yesterday.
    B starts while HQ presents meeting 2: as long as media reaches B, no byte of meeting 1 moves
    (B wants it, HQ serves nothing, B writes nothing); after the presenter stops B fetches
    meeting 1, and then HQ's whole meeting-2 recording over B's own shorter copy."""
    hq_dir, invites = make_commune(tmp_path, 1)
    b_dir = invites[0][0]
    nodes: list[NodeProcess] = []
    presenter: Presenter | None = None
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        meshmeet("join", "--data-dir", str(b_dir), invites[0][1], "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        asyncio.run(present(hq, 150, b"m1"))  # meeting 1, while B is down
        wait_for(lambda: hq.status()["media"]["recordings"]["local"] == 1, "HQ lists meeting 1 once media stopped")
        hq.stop()
        nodes.remove(hq)
        (today, m1_data), = recordings(hq_dir).items()
        day = datetime.datetime.strptime(today.removesuffix(".mmrec"), "%Y%m%d")
        m1 = (day - datetime.timedelta(days=1)).strftime("%Y%m%d")
        (hq_dir / "recordings" / today).rename(hq_dir / "recordings" / f"{m1}.mmrec")
        assert sum(r.data[0] == C.KIND_CHUNK for r in read_records(m1_data)) == 150 + 75

        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        wait_for(lambda: hq.status()["media"]["recordings"]["local"] == 1, "restarted HQ lists meeting 1")
        presenter = Presenter(hq, b"m2")  # meeting 2: live, and it stays live
        presenter.start()
        wait_for(lambda: hq.status()["media"]["recordings"]["live"], "HQ is live")

        b = NodeProcess(b_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(b)

        def b_live() -> dict | None:
            st = b.status()["media"]
            return st if st["recordings"]["live"] else None

        first = wait_for(b_live, "live media reaches B")  # HQ's list came first, on link-up
        samples = []
        for _ in range(30):  # ~3 s (LIVE_QUIET_S) of B's state while HQ presents
            st, hq_rec = b.status()["media"], hq.status()["media"]["recordings"]
            samples.append(st["counters"]["chunks_in"])
            rec = st["recordings"]
            assert rec["counters"]["pieces_in"] == 0 and rec["counters"]["bytes_in"] == 0, rec
            assert rec["live"] and m1 in rec["wanted"], rec  # media reaches B; B still wants meeting 1
            assert all(f["have"] == 0 for f in rec["fetching"]) and rec["local"] == 0, rec
            assert hq_rec["live"] and hq_rec["counters"]["pieces_out"] == 0, hq_rec
            assert not (b_dir / "recordings" / f"{m1}.mmrec").exists()
            assert not (b_dir / "recordings" / f"{m1}.mmrec.part").exists()
            assert presenter.is_alive()
            time.sleep(0.1)
        assert first["counters"]["chunks_in"] < samples[len(samples) // 2] < samples[-1]  # media kept flowing
        b_own = wait_for(lambda: recordings(b_dir).get(today), "B records the part of meeting 2 it relays")

        sent_live = presenter.sent[0]
        presenter.stop()
        presenter = None
        wait_for(lambda: recordings(b_dir).get(f"{m1}.mmrec") == m1_data, "B fetched meeting 1, byte-identical")
        m2_data = wait_for(lambda: hq.status()["media"]["recordings"]["local"] == 2 and recordings(hq_dir)[today],
                           "HQ lists meeting 2 once media stopped")
        # HQ's own recording, not B's shorter copy (HQ fetching that, replacing its own, was a bug)
        assert sum(r.data[0] == C.KIND_CHUNK for r in read_records(m2_data)) >= sent_live > 0
        assert len(b_own) < len(m2_data) and not m2_data.startswith(b_own)  # B's copy is shorter, not a prefix
        wait_for(lambda: recordings(b_dir).get(today) == m2_data, "B replaced its copy of meeting 2 with HQ's")
        st = b.status()["media"]["recordings"]
        assert st["counters"]["fetched"] == 2 and st["counters"]["verify_failed"] == 0, st
        assert st["counters"]["bytes_in"] == len(m1_data) + len(m2_data), st  # each from offset 0, once
        assert not list((b_dir / "recordings").glob("*.part"))
        assert recordings(hq_dir) == {f"{m1}.mmrec": m1_data, today: m2_data}  # HQ's copies untouched
        assert hq.status()["media"]["recordings"]["counters"]["fetched"] == 0  # and never replaced by B's
    finally:
        if presenter is not None:
            presenter.stopping.set()
            presenter.join(30)
        stop_all(nodes)
