"""The media hub: the sans-IO relay core and the browsers around it, on the gateway's asyncio thread.

`MediaHub` feeds the relay core (meshmeet/media/relay.py) with what arrives from the node (`feed`,
one bridge crossing per chunk) or, standalone, straight from the local presenter page; each hall
page is one relay link with its own queues and quality level, drained right after each chunk and
on a 20 ms timer, but only while that browser's socket buffer is small (so congestion shows up as
relay queue delay). Keyframe and audio rate requests go to `upstream` (towards the source) or to
the local presenter. What it relays is recorded by `LiveRecording` (recording/live.py). Its
routes and the node's gateway hook are in web/media_routes.py.

What a browser sent reaches it only through `from_presenter`, `from_subscriber` and
`player_report`, each of which checks it first and answers False for anything malformed. This
module must never import trio, touch node state, or decide quality itself (the relay core does);
its only ways out are the WebSockets and the `upstream` callable it is given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from meshmeet.media import chunk as C
from meshmeet.media.floor import KIND_SOURCE_RESET
from meshmeet.media.player_report import PlayerReportError, parse_player_report
from meshmeet.media.relay import MediaRelay, Outgoing
from meshmeet.media.voices import KIND_VOICE_ROLE, VoiceError, parse_role
from meshmeet.recording.live import LiveRecording
from meshmeet.slides.record import KIND_SLIDE_RECORD

log = logging.getLogger(__name__)

TICK_S = 0.02
WS_WRITE_BUFFER_BYTES = 32 * 1024  # above this a browser's socket is congested: leave it queued in the relay
PRESENTER_LINK = "presenter"
NODE_LINK = "node"
STALL_S = 0.02  # the drain after a chunk ran this much late: this loop stalled (relay.process_stalled)

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
        self.recording = LiveRecording(recordings_dir, self._name) if recordings_dir is not None else None
        self.format_errors = 0
        self._drain_due: float | None = None
        # which voice this site speaks (JSON text for its hall pages: the TV page captures then)
        self.voice_role = json.dumps({"type": "voice", "mine": None, "root": False})

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    # ---- input -------------------------------------------------------------------------
    def feed(self, data: bytes | str) -> None:
        """A media message from the node (call on the gateway loop)."""
        if not isinstance(data, bytes) or not data:
            self.format_errors += 1
            return
        if data[0] == KIND_VOICE_ROLE:
            self._voice_role(data)
            return
        if data[0] == KIND_SOURCE_RESET:  # the floor moved: forget the old source's configs
            self.relay.set_source(NODE_LINK)
            return
        if data[0] == KIND_SLIDE_RECORD:  # the page on the TVs (meshmeet/slides/): recorded, not relayed
            if self.recording is not None:
                self.recording.add_slide(data, self._clock())
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

    def _voice_role(self, data: bytes) -> None:
        """The node says which voice this site speaks: every hall page hears it when it changes."""
        try:
            mine, root = parse_role(data)
        except VoiceError:
            self.format_errors += 1
            return
        text = json.dumps({"type": "voice", "mine": mine, "root": root})
        if text != self.voice_role:
            self.voice_role = text
            for ws, _ in tuple(self._subs.values()):
                if not ws.closed:
                    asyncio.get_running_loop().create_task(ws.send_str(text))

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
        if self._drain_due is None:
            self._drain_due = now  # a drain is due now: a later one is this loop's stall, not the browsers'
        outs = self.relay.receive(link, data, now)
        if self.recording is not None:
            self.recording.add(data, now)
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

    def sync_recording(self) -> None:
        """Call about once a second: the tail of a meeting reaches the disk (and recording sync)."""
        if self.recording is not None:
            self.recording.sync(self._clock())

    @property
    def meeting_id(self) -> str:
        """The name of the recording being written (or about to be)."""
        return self.recording.name if self.recording is not None else self._name()

    # ---- browsers ----------------------------------------------------------------------
    def add_presenter(self, ws: web.WebSocketResponse) -> None:
        self._presenters.add(ws)

    def remove_presenter(self, ws: web.WebSocketResponse) -> None:
        self._presenters.discard(ws)

    @property
    def presenter_count(self) -> int:
        return len(self._presenters)

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
        if self._drain_due is not None:
            if now - self._drain_due > STALL_S:
                self.relay.process_stalled(self._drain_due, now)
            self._drain_due = None
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
        if self.recording is not None:
            self.recording.close()
