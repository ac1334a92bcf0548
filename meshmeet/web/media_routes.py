"""Media on the web gateway: the presenter and hall pages, their WebSockets, fan-out to browsers.

`MediaHub` runs on the gateway's asyncio thread. It feeds the sans-IO relay core
(meshmeet/media/relay.py) with what arrives from the node (`feed`, one bridge crossing per chunk)
or, standalone, straight from the local presenter page; each hall page is one relay link with its
own queues and quality level, drained right after each chunk and on a 20 ms timer, but only
while that browser's socket buffer is small (so congestion shows up as relay queue delay). Keyframe and
audio rate requests go to `upstream` (towards the source) or to the local presenter. It records what it relayed (recorder.py) and
replays recordings for /hall?replay=ID. `add_media_routes(app, hub)` mounts everything;
`node_media_setup(...)` is the gateway hook a node uses (hub fed from the node's "media" topic,
presenter chunks and keyframe requests sent to the node as inbound "media_up").

What browsers send is checked before it goes anywhere: the presenter socket takes only well-formed
media messages, a hall socket only keyframe / audio-rate requests and its player's receiver
reports (JSON text, meshmeet/media/player_report.py); anything else (other text, junk, a hall
sending media) closes that one socket with 1008. Cross-origin upgrades never get here (the
gateway's boundary refuses them). This module must never import trio, touch node state, or decide
quality itself (the relay core does); its only ways out are the WebSockets and the `upstream`
callable it is given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from meshmeet.media import chunk as C
from meshmeet.media.floor import KIND_SOURCE_RESET
from meshmeet.media.player_report import PlayerReportError, parse_player_report
from meshmeet.recording.recorder import Recorder, RecordingError, read_records
from meshmeet.media.relay import MediaRelay, Outgoing
from meshmeet.media.voices import KIND_VOICE_ROLE, VoiceError, parse_role
from meshmeet.slides.record import KIND_SLIDE_RECORD
from meshmeet.slides.record import record_json as slide_record_json

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static" / "media"
TICK_S = 0.02
WS_WRITE_BUFFER_BYTES = 32 * 1024  # above this a browser's socket is congested: leave it queued in the relay
WS_MAX_MSG_BYTES = C.MAX_MESSAGE_BYTES + 64
MEETING_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PRESENTER_LINK = "presenter"
NODE_LINK = "node"
MEDIA_TOPIC = "media"  # node -> gateway: whole chunks and configs, keyframe requests, source resets
UP_TOPIC = "media_up"  # gateway -> node: presenter chunks and configs, keyframe requests
STATS_TOPIC = "media_stats"  # gateway -> node: this hub's stats (JSON text), every NODE_STATS_S
NODE_STATS_S = 1.0
RECORDING_CHECK_S = 1.0  # how often the recorder checks that its file is still the one on disk

Upstream = Callable[[bytes], Awaitable[None]]


class MediaHub:
    """Relay + browsers on the asyncio thread. `upstream=None`: standalone (presenter is the source)."""

    def __init__(self, *, upstream: Upstream | None = None, recordings_dir: Path | None = None,
                 meeting_id: str | Callable[[], str] = "live", clock: Callable[[], float] = time.monotonic) -> None:
        self._upstream = upstream
        self._clock = clock
        # every voice comes from the node (or, standalone, the presenter); every hall page mixes them
        self.relay = MediaRelay(source=NODE_LINK if upstream is not None else PRESENTER_LINK, voices_follow_source=True)
        self._subs: dict[str, tuple[web.WebSocketResponse, asyncio.BaseTransport | None]] = {}
        self._presenters: set[web.WebSocketResponse] = set()
        self._next_id = 0
        self._ticker: asyncio.Task | None = None
        self.recordings_dir = recordings_dir
        # The recording's name: fixed, or asked again at every check (the node's started meeting).
        self._name = meeting_id if callable(meeting_id) else (lambda: meeting_id)
        self._recorder: Recorder | None = None
        self._recording_name: str | None = None
        # stream byte -> latest (config, arrival): a new recording file starts with these
        self._last_configs: dict[int, tuple[bytes, float]] = {}
        self._last_slide: tuple[bytes, float] | None = None  # the slide record a new file starts with
        self._checked_at = -1e18
        self.format_errors = 0
        self._voice_role = json.dumps({"type": "voice", "mine": None, "root": False})

    # ---- input -------------------------------------------------------------------------
    def feed(self, data: bytes | str) -> None:
        """A media message from the node (call on the gateway loop)."""
        if not isinstance(data, bytes) or not data:
            self.format_errors += 1
            return
        if data[0] == KIND_VOICE_ROLE:  # which voice this site speaks: its hall pages capture then
            try:
                mine, root = parse_role(data)
            except VoiceError:
                self.format_errors += 1
                return
            text = json.dumps({"type": "voice", "mine": mine, "root": root})
            if text != self._voice_role:
                self._voice_role = text
                for ws, _ in tuple(self._subs.values()):
                    if not ws.closed:
                        asyncio.get_running_loop().create_task(ws.send_str(text))
            return
        if data[0] == KIND_SOURCE_RESET:  # the floor moved: forget the old source's configs
            self.relay.set_source(NODE_LINK)
            return
        if data[0] == KIND_SLIDE_RECORD:  # the page on the TVs (meshmeet/slides/): recorded, not relayed
            self._last_slide = (data, self._clock())
            if self.recordings_dir is not None and self._recorder is not None:
                self._recorder.add(data, self._clock())
            return
        try:
            if C.peek_kind(data) in C.UPSTREAM_KINDS:  # keyframe / audio rate requests: for the presenter
                C.parse(data)
                self._to_presenters(data)
                return
            self._receive(NODE_LINK, data)
        except C.MediaFormatError:
            self.format_errors += 1
            return
        asyncio.get_running_loop().create_task(self._drain_all())  # one task per chunk, not per browser

    async def from_presenter(self, data: bytes) -> bool:
        """A message from the presenter page; False (and nothing done) when it is malformed."""
        try:
            kind = C.peek_kind(data)
            C.parse(data) if kind != C.KIND_CHUNK else C.peek_chunk(data)
        except C.MediaFormatError:
            self.format_errors += 1
            return False
        if self._upstream is not None:
            await self._upstream(data)  # the node relays it, and feeds it back to us
        else:
            self._receive(PRESENTER_LINK, data)
            await self._drain_all()
        return True

    def from_subscriber(self, sub: str, data: bytes) -> bool:
        """A hall page may only ask (keyframe, audio rate); False for anything else or malformed."""
        try:
            if C.peek_kind(data) not in C.UPSTREAM_KINDS:
                raise C.MediaFormatError("a hall page may only send requests")
            C.parse(data)
            self._send_out(self.relay.receive(sub, data, self._clock()))
        except C.MediaFormatError:
            self.format_errors += 1
            return False
        return True

    def _receive(self, link: str, data: bytes) -> None:
        now = self._clock()
        outs = self.relay.receive(link, data, now)
        self._record(data, now)
        self._send_out(outs)

    def player_report(self, sub: str, text: str) -> bool:
        """A hall page's receiver report (JSON text); False if malformed (the caller closes it)."""
        try:
            rep = parse_player_report(text)
        except PlayerReportError as e:
            log.info("%s: bad player report: %s", sub, e.en)
            self.format_errors += 1
            return False
        self.relay.player_report(sub, self._clock(), rep.audio_ts_us)
        return True

    def _send_out(self, outs: list[Outgoing]) -> None:
        for o in outs:
            if o.link == PRESENTER_LINK:
                self._to_presenters(o.data)
            elif self._upstream is not None:
                asyncio.get_running_loop().create_task(self._upstream(o.data))

    def _to_presenters(self, data: bytes) -> None:
        for ws in tuple(self._presenters):
            if not ws.closed:
                asyncio.get_running_loop().create_task(ws.send_bytes(data))

    def _record(self, data: bytes, now: float) -> None:
        """Configs wait in memory until a chunk comes (a node that only hears the holder's config
        repeats writes no file); the file is reopened if recording sync replaced it meanwhile."""
        if self.recordings_dir is None:
            return
        if data[:1] != bytes((C.KIND_CHUNK,)):
            if data[:1] == bytes((C.KIND_CONFIG,)) and len(data) > 1:
                self._last_configs[data[1]] = (data, now)
            if self._recorder is not None:
                self._recorder.add(data, now)
            return
        if self._recorder is None or now - self._checked_at >= RECORDING_CHECK_S:
            self._open_recorder(now)
            assert self._recorder is not None
        self._recorder.add(data, now)

    def sync_recording(self) -> None:
        """Call about once a second: the tail of a meeting reaches the disk (and recording sync)."""
        if self._recorder is not None:
            self._recorder.idle_sync(self._clock())

    @property
    def meeting_id(self) -> str:
        """The name of the recording being written (or about to be)."""
        return self._recording_name or self._name()

    def _open_recorder(self, now: float) -> None:
        name = self._name()
        path = self.recordings_dir / f"{name}.mmrec"
        self._checked_at = now
        if self._recorder is not None:
            if name == self._recording_name:
                try:
                    if os.stat(path).st_ino == os.fstat(self._recorder.fileno()).st_ino:
                        return
                except OSError:
                    pass
                log.info("recording %s was replaced (fetched from a neighbour): appending to the new file", path.name)
            else:
                log.info("recording now goes to %s (another meeting started)", path.name)
            self._recorder.close()
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        f = open(path, "ab")  # noqa: SIM115 (kept open)
        self._recorder = Recorder(f, now)
        if name != self._recording_name:  # a new file (not one recording sync replaced): decodable from its start
            for cfg, at in sorted(self._last_configs.values(), key=lambda x: x[1]):
                self._recorder.add(cfg, at)
            if self._last_slide is not None:
                self._recorder.add(self._last_slide[0], now)
        self._recording_name = name

    # ---- subscribers -------------------------------------------------------------------
    def add_subscriber(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, *,
                       best_level: int = 0) -> str:
        """A browser link; best_level 2 = low layer at most (small screens), 3 = audio only."""
        self._next_id += 1
        sub = f"hall-{self._next_id}"
        self._subs[sub] = (ws, transport)
        self._send_out(self.relay.add_link(sub, self._clock(), best_level=best_level, voices=True))
        self._ensure_ticker()
        return sub

    def remove_subscriber(self, sub: str) -> None:
        self.relay.remove_link(sub)
        self._subs.pop(sub, None)

    async def _drain(self, sub: str, now: float) -> None:
        """Hand `sub` what the relay allows while its socket buffer is small (no waiting on it)."""
        ws, tr = self._subs[sub]
        while not ws.closed:
            if tr is not None and (tr.is_closing() or tr.get_write_buffer_size() > WS_WRITE_BUFFER_BYTES):
                return  # congested: the relay's queue for it grows, and its ladder reacts
            data = self.relay.pop(sub, now)
            if data is None:
                return
            await ws.send_bytes(data)

    async def _drain_all(self) -> None:
        now = self._clock()
        for sub in tuple(self._subs):
            if sub in self._subs:
                try:
                    await self._drain(sub, now)
                except (ConnectionError, RuntimeError):
                    pass  # closing; the handler removes it

    def set_rate_cap(self, sub: str, rate_bps: float | None) -> None:
        """Emulate a weak link into one hall (tests, diagnostics)."""
        self.relay.set_rate_cap(sub, rate_bps)

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        while True:
            await self._drain_all()  # first: after a stall of this loop, judge what the browsers left
            now = self._clock()
            self._send_out(self.relay.tick(now))
            await self._drain_all()
            await asyncio.sleep(max(0.005, min(TICK_S, self.relay.next_deadline(now) - now)))

    def stats(self) -> dict[str, Any]:
        """The "media" part of `meshmeet status --json`."""
        now = self._clock()
        return {"source": self.relay.source,
                "links": [{"peer": s.peer, "layer": s.layer, "queue_ms": s.queue_ms, "estimate_kbps": s.estimate_kbps,
                           "audio_request_kbps": s.audio_request_kbps, "audio_frame_ms": s.audio_frame_ms,
                           "audio_fec_percent": s.audio_fec_percent, "audio_late_dropped": s.audio_late_dropped,
                           "player_lag_ms": s.player_lag_ms} for s in self.relay.stats(now)],
                "subscribers": len(self._subs)}

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    # ---- handlers ----------------------------------------------------------------------
    async def _present_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=WS_MAX_MSG_BYTES, heartbeat=20.0)
        await ws.prepare(request)
        self._presenters.add(ws)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    if msg.type is WSMsgType.TEXT or not await self.from_presenter(msg.data):
                        await _refuse(ws, "presenter")
                        break
        finally:
            self._presenters.discard(ws)
        return ws

    async def _hall_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=4096, heartbeat=20.0)
        await ws.prepare(request)
        best = {"high": 0, "low": 2, "audio": 3}.get(request.query.get("layer", "high"), 0)
        sub = self.add_subscriber(ws, request.transport, best_level=best)
        try:
            await ws.send_str(f'{{"subscriber":"{sub}"}}')
            await ws.send_str(self._voice_role)
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    ok = (self.player_report(sub, msg.data) if msg.type is WSMsgType.TEXT
                          else self.from_subscriber(sub, msg.data))
                    if not ok:
                        await _refuse(ws, sub)
                        break
        finally:
            self.remove_subscriber(sub)
        return ws

    async def _replay_ws(self, request: web.Request) -> web.StreamResponse:
        meeting = request.match_info["meeting"]
        if not MEETING_ID_RE.match(meeting) or self.recordings_dir is None:
            raise web.HTTPNotFound(text="không có bản ghi / no such recording")
        path = self.recordings_dir / f"{meeting}.mmrec"
        if not path.is_file():
            raise web.HTTPNotFound(text="không có bản ghi / no such recording")
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
        start = self._clock()
        base_us = prev_us = 0  # a node restarted mid-day appends a segment whose times start at 0 again
        try:
            for rec in read_records(data):
                if rec.at_us < prev_us:
                    base_us += prev_us - rec.at_us
                prev_us = rec.at_us
                delay = start + (base_us + rec.at_us) / 1e6 - self._clock()
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

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())


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
            while inbound is not None:
                await asyncio.sleep(NODE_STATS_S)
                hub.sync_recording()
                stats = hub.stats()
                try:
                    await inbound(STATS_TOPIC, json.dumps({"subscribers": stats["subscribers"],
                                                           "format_errors": hub.format_errors,
                                                           "presenters": len(hub._presenters),
                                                           "links": stats["links"]}))
                except ConnectionError:
                    return

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
    app.router.add_get("/present", _page)
    app.router.add_get("/media/hall", _page)
    app.router.add_get("/media/ws/present", hub._present_ws)
    app.router.add_get("/media/ws/hall", hub._hall_ws)
    app.router.add_get("/media/ws/replay/{meeting}", hub._replay_ws)
    app.router.add_get("/media/stats", hub._stats)
    app.router.add_static("/media/static/", STATIC_DIR)

    async def _close(_app: web.Application) -> None:
        await hub.close()

    app.on_cleanup.append(_close)
