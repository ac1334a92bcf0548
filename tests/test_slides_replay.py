"""The page in view is recorded with the meeting and replayed at its time (issue 15, part 3).

A real MediaHub records the node's slide records into the meeting's recording file between the
media it relays (a record sent before the first chunk opens the file is written at its start);
replay over a real WebSocket on loopback hands them to the TV page as JSON text, in order, between
the binary media messages (the player frame forwards them to /hall, slides-tv.js shows the page).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from browser.media_fixtures import AppThread
from meshmeet.recording.recorder import read_records
from meshmeet.slides.record import encode_record
from meshmeet.web.media_hub import MediaHub
from test_media_hub import CFG_A, chunk


def test_slide_records_go_into_the_recording_and_replay_as_text_in_order(tmp_path: Path) -> None:
    now = [0.0]
    hub = MediaHub(recordings_dir=tmp_path, meeting_id="m1", clock=lambda: now[0])
    hub.feed(encode_record("deck01", 1))  # before any media: remembered for the file's start
    hub.recording.add(CFG_A, 0.5)
    now[0] = 1.0
    hub.recording.add(chunk(0, 0), 1.0)  # the file opens: configs, then the page in view
    now[0] = 2.0
    hub.feed(encode_record("deck01", 2))  # the chair turns the page
    hub.recording.add(chunk(0, 1), 3.0)
    hub.recording.recorder.sync(3.0)
    records = list(read_records((tmp_path / "m1.mmrec").read_bytes()))
    assert [r.data for r in records] == [CFG_A, encode_record("deck01", 1), chunk(0, 0), encode_record("deck01", 2),
                                         chunk(0, 1)]
    assert records[3].at_us == 1_000_000  # at its time: a second after the file opened

    with AppThread(lambda: MediaHub(recordings_dir=tmp_path)) as app:
        async def main() -> list:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"http://127.0.0.1:{app.port}/media/ws/replay/m1")
                return [json.loads(m.data) if m.type == aiohttp.WSMsgType.TEXT else m.data async for m in ws
                        if m.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)]
        got = asyncio.run(main())
    assert got == [CFG_A, {"type": "slide", "doc_id": "deck01", "page": 1}, chunk(0, 0),
                   {"type": "slide", "doc_id": "deck01", "page": 2}, chunk(0, 1)]
