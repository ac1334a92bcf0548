"""Media on the web gateway: the presenter and hall pages, their WebSockets, replay, the node's hook.

`add_media_routes(app, hub)` mounts the pages and sockets around a `MediaHub` (web/media_hub.py);
`node_media_setup(...)` is the gateway hook a node uses (hub fed from the node's "media" topic,
presenter chunks and keyframe requests sent to the node as inbound "media_up", stats as
"media_stats"). /media/ws/replay/ID plays a recording back at its own pace.

What browsers send is checked before it goes anywhere: the presenter socket takes only well-formed
media messages, a hall socket only keyframe / audio-rate requests and its player's receiver
reports (JSON text, meshmeet/media/player_report.py); anything else (other text, junk, a hall
sending media) closes that one socket with 1008. Cross-origin upgrades never get here (the
gateway's boundary refuses them). This module must never import trio, touch node state, or decide
quality itself (the relay core does).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from meshmeet.media import chunk as C
from meshmeet.recording.recorder import RecordingError, read_records
from meshmeet.slides.record import KIND_SLIDE_RECORD
from meshmeet.slides.record import record_json as slide_record_json

from .media_hub import MediaHub

__all__ = ["MEDIA_TOPIC", "STATS_TOPIC", "UP_TOPIC", "MediaHub", "add_media_routes", "node_media_setup"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static" / "media"
WS_MAX_MSG_BYTES = C.MAX_MESSAGE_BYTES + 64
MEETING_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MEDIA_TOPIC = "media"  # node -> gateway: whole chunks and configs, keyframe requests, source resets
UP_TOPIC = "media_up"  # gateway -> node: presenter chunks and configs, keyframe requests
STATS_TOPIC = "media_stats"  # gateway -> node: this hub's stats (JSON text), every NODE_STATS_S
NODE_STATS_S = 1.0


async def _present_ws(hub: MediaHub, request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=WS_MAX_MSG_BYTES, heartbeat=20.0)
    await ws.prepare(request)
    hub.add_presenter(ws)
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                if msg.type is WSMsgType.TEXT or not await hub.from_presenter(msg.data):
                    await _refuse(ws, "presenter")
                    break
    finally:
        hub.remove_presenter(ws)
    return ws


async def _hall_ws(hub: MediaHub, request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=4096, heartbeat=20.0)
    await ws.prepare(request)
    best = {"high": 0, "low": 2, "audio": 3}.get(request.query.get("layer", "high"), 0)
    sub = hub.add_subscriber(ws, request.transport, best_level=best)
    try:
        await ws.send_str(f'{{"subscriber":"{sub}"}}')
        await ws.send_str(hub.voice_role)
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                ok = (hub.player_report(sub, msg.data) if msg.type is WSMsgType.TEXT
                      else hub.from_subscriber(sub, msg.data))
                if not ok:
                    await _refuse(ws, sub)
                    break
    finally:
        hub.remove_subscriber(sub)
    return ws


async def _replay_ws(hub: MediaHub, request: web.Request) -> web.StreamResponse:
    meeting = request.match_info["meeting"]
    if not MEETING_ID_RE.match(meeting) or hub.recordings_dir is None:
        raise web.HTTPNotFound(text="không có bản ghi / no such recording")
    path = hub.recordings_dir / f"{meeting}.mmrec"
    if not path.is_file():
        raise web.HTTPNotFound(text="không có bản ghi / no such recording")
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
    clock = hub.clock
    start = clock()
    base_us = prev_us = 0  # a node restarted mid-day appends a segment whose times start at 0 again
    try:
        for rec in read_records(data):
            if rec.at_us < prev_us:
                base_us += prev_us - rec.at_us
            prev_us = rec.at_us
            delay = start + (base_us + rec.at_us) / 1e6 - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if ws.closed:
                break
            if rec.data[:1] == bytes((KIND_SLIDE_RECORD,)):  # to the TV page, as text
                await ws.send_str(slide_record_json(rec.data))
                continue
            await ws.send_bytes(rec.data)
    except RecordingError as e:
        log.warning("replay %s: %s", meeting, e)
    await ws.close()
    return ws


def node_media_setup(*, recordings_dir: Path, meeting_id: Callable[[], str]) -> Callable[[web.Application, Any], None]:
    """The node's gateway hook (node.web_setups): a MediaHub fed by the node, mounted on the app.

    The hub takes whole chunks from the node's MEDIA_TOPIC (one bridge crossing per chunk, fanned
    out to the hall pages here), sends presenter chunks and keyframe requests back as UP_TOPIC,
    records to `recordings_dir/NAME.mmrec` (NAME = `meeting_id()`, read from another thread: the
    node keeps it in a plain attribute), and reports its stats as STATS_TOPIC.
    """

    def setup(app: web.Application, ctx: Any) -> None:
        inbound = ctx.inbound

        async def upstream(data: bytes) -> None:
            if inbound is not None:
                try:
                    await inbound(UP_TOPIC, data)
                except ConnectionError:
                    pass  # the node is stopping

        hub = MediaHub(upstream=upstream, recordings_dir=recordings_dir, meeting_id=meeting_id)
        add_media_routes(app, hub)
        ctx.hub.add_sink(MEDIA_TOPIC, hub.feed)

        async def report() -> None:
            sent = None  # the node keeps the last report: an unchanged one does not cross again (idle CPU)
            while inbound is not None:
                await asyncio.sleep(NODE_STATS_S)
                hub.sync_recording()
                stats = hub.stats()
                body = json.dumps({"subscribers": stats["subscribers"], "format_errors": hub.format_errors,
                                   "presenters": hub.presenter_count, "links": stats["links"]})
                if body == sent:
                    continue
                try:
                    await inbound(STATS_TOPIC, body)
                except ConnectionError:
                    return
                sent = body

        async def start(_app: web.Application) -> None:
            _app[_REPORT_KEY] = asyncio.get_running_loop().create_task(report())

        async def stop(_app: web.Application) -> None:
            task = _app.get(_REPORT_KEY)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        app.on_startup.append(start)
        app.on_cleanup.append(stop)

    return setup


async def _refuse(ws: web.WebSocketResponse, who: str) -> None:
    """A malformed browser message closes that browser's socket only (1008), nothing else."""
    log.info("media: closing the %s socket after a malformed message", who)
    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"malformed media message")


_REPORT_KEY = web.AppKey("meshmeet_media_report", asyncio.Task)


async def _page(request: web.Request) -> web.FileResponse:
    name = "present.html" if request.path.rstrip("/") == "/present" else "hall.html"
    return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-store"})


def add_media_routes(app: web.Application, hub: MediaHub) -> None:
    """Mount /present, /media/hall (the player; the hall TV page at /hall embeds it), /media/static/,
    /media/ws/{present,hall,replay/ID}, /media/stats."""

    async def present_ws(request: web.Request) -> web.StreamResponse:
        return await _present_ws(hub, request)

    async def hall_ws(request: web.Request) -> web.StreamResponse:
        return await _hall_ws(hub, request)

    async def replay_ws(request: web.Request) -> web.StreamResponse:
        return await _replay_ws(hub, request)

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(hub.stats())

    app.router.add_get("/present", _page)
    app.router.add_get("/media/hall", _page)
    app.router.add_get("/media/ws/present", present_ws)
    app.router.add_get("/media/ws/hall", hall_ws)
    app.router.add_get("/media/ws/replay/{meeting}", replay_ws)
    app.router.add_get("/media/stats", stats)
    app.router.add_static("/media/static/", STATIC_DIR)

    async def _close(_app: web.Application) -> None:
        await hub.close()

    app.on_cleanup.append(_close)
