"""This node's recordings beside live media: the recording's name and recording sync.

The recording is named after the meeting the chair has started (so /hall?replay=MEETING_ID finds
it on every node), else after the date. Recording sync (meshmeet.media.recsync decides, the
RecordingStore keeps files) lists this node's recordings to each tree neighbour and fetches and
serves pieces only while no media flows through this node and the link's writer queue is short;
files are hashed and verified in threads.

MediaService (node/media_service.py) owns one, feeds it link changes, recsync messages and when
media last flowed, and runs it. It must never touch live media, nor send a recording piece while
media flows or a link's writer queue is long.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import trio

from ..media import recsync as R
from ..meeting import queries
from ..recording.recstore import RecordingStore
from ..wire import services

if TYPE_CHECKING:
    from collections.abc import Callable
    from .node import Node
    from .ports import StateReader

log = logging.getLogger(__name__)

LIVE_QUIET_S = 3.0  # media flowed this recently: this node is live (no recording sync, its meeting file is growing)
RECSYNC_QUEUE_MAX_MESSAGES = 4  # recording pieces go out only while fewer messages wait in the link's writer queue
RECSYNC_POLL_S = 0.1
RESCAN_S = 10.0  # the recordings directory is rescanned (hashes cached) this often
RECORDING_NAME_CHECK_S = 1.0  # how often the started meeting (the recording's name) is looked up while media flows
RECORDING_NAME_IDLE_S = 10.0  # otherwise (a change of the meetings table wakes the lookup at once): the date's turn


def _today() -> str:
    return time.strftime("%Y%m%d", time.localtime())


class MediaRecordings:
    """See the module docstring. `tree_neighbours()` gives the peers recordings travel with;
    `counters` is MediaService's (bad recsync bytes count as its format errors)."""

    def __init__(self, node: "Node", *, state: "StateReader | None", tree_neighbours: "Callable[[], set[str]]",
                 counters: dict) -> None:
        self.node = node
        self.state = state  # the started meeting names the recording; None: named by date
        self.tree_neighbours = tree_neighbours
        self.counters = counters
        self.recordings_dir = node.data_dir / "recordings"
        self.meeting_id = _today()  # the recording's name: see _name_loop
        self.media_at = -math.inf  # when the last media chunk went through this node
        self.recstore = RecordingStore(self.recordings_dir)
        self.recsync = R.RecordingSync(partial=self.recstore.partials())
        self._wake = trio.Event()
        self._to_verify: list[R.Verify] = []
        self._meetings_changed = trio.Event()
        self._hooked = state is not None
        if state is not None:
            state.on_tables_changed(self._on_tables)  # SyncService tells which tables changed

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sync_loop)
            nursery.start_soon(self._name_loop)

    def link_change(self, peer: str, up: bool) -> None:
        if up:
            self._do(self.recsync.peer_up(peer))  # exchange recording lists on link up
        else:
            self.recsync.peer_down(peer)
        self._wake.set()

    def status(self, now: float) -> dict:
        return {"recording": str(self.recordings_dir / f"{self.meeting_id}.mmrec"),
                "recordings": {**self.recsync.status(), "live": self.live(now)}}

    async def _name_loop(self) -> None:
        """Name the recording after the meeting the chair has started (`meeting_update` status
        "started"; the latest by `starts`, then id, if several), so /hall?replay=MEETING_ID
        finds it on every node; with none started, after the date (kept while media flows, so a
        meeting is not cut at midnight). The hub reads `meeting_id` before each write check."""
        while True:
            self._meetings_changed = trio.Event()
            started = await self._started_meeting()
            if started is not None:
                name = started
            elif self.live(trio.current_time()):
                name = self.meeting_id  # media still flows: the file it goes to keeps its name
            else:
                name = _today()
            if name != self.meeting_id:
                log.info("recording name: %s", name)
                self.meeting_id = name
            live = self.live(trio.current_time())
            with trio.move_on_after(RECORDING_NAME_IDLE_S if self._hooked and not live else RECORDING_NAME_CHECK_S):
                await self._meetings_changed.wait()

    def _on_tables(self, tables: list[str]) -> None:
        if "meetings" in tables:
            self._meetings_changed.set()

    async def _started_meeting(self) -> str | None:
        if self.state is None:
            return None
        ids = [r["id"] for r in await self.state.read(queries.started_meetings)]
        return next((i for i in reversed(ids) if R.NAME_RE.match(i)), None)

    def live(self, now: float) -> bool:
        """Media went through this node within LIVE_QUIET_S: its meeting file is growing."""
        return now - self.media_at < LIVE_QUIET_S

    def on_message(self, peer: str, body: bytes) -> None:
        """A recording sync message (0x20-0x22) from a tree neighbour."""
        try:
            self._do(self.recsync.receive(peer, body, trio.current_time()))
        except R.RecSyncError as e:
            self.counters["format_errors"] += 1
            log.debug("recording sync from %s: %s", peer, e.en)
        self._wake.set()

    def _broadcast(self) -> None:
        body = self.recsync.list_message()
        for peer in self.recsync.peers():
            self.node.send(peer, services.MEDIA, body)

    def _do(self, actions: list[R.Action]) -> None:
        for a in actions:
            if isinstance(a, R.Send):
                self.node.send(a.peer, services.MEDIA, a.body)
            elif isinstance(a, R.Serve):
                try:
                    data = self.recstore.read(a.name, a.offset, a.length)  # one piece: a short blocking read
                except OSError as e:
                    log.warning("recording %s: %s", a.name, e)
                    continue
                if len(data) == a.length:
                    self.node.send(a.peer, services.MEDIA, R.encode(R.RecPiece(a.name, a.offset, data)))
            elif isinstance(a, R.Write):
                try:
                    self.recstore.append_part(a.name, a.offset, a.data)
                except OSError as e:
                    log.warning("recording %s: %s", a.name, e)
                    self.recsync.abandon(a.name)
            else:
                self._to_verify.append(a)

    async def _sync_loop(self) -> None:
        next_scan = trio.current_time()
        live = False
        while True:
            self._wake = trio.Event()
            now = trio.current_time()
            if live and not self.live(now):
                # the meeting file stopped growing: list it before anything is fetched, or the core,
                # not knowing this node holds it, would replace it by a neighbour's shorter copy
                next_scan = now
            if now >= next_scan:
                recording = frozenset({self.meeting_id}) if self.live(now) else frozenset()
                items = await trio.to_thread.run_sync(self.recstore.scan, recording)
                if self.recsync.set_local(items):
                    self._broadcast()
                now = trio.current_time()
                next_scan = now + RESCAN_S
            live = self.live(now)  # judged after the scan: hashing takes a while, media may have started
            self.recsync.busy = frozenset({self.meeting_id}) if live else frozenset()
            ready = [] if live else [p for p in sorted(self.tree_neighbours())
                                     if self.node.links.queue_depth(p) < RECSYNC_QUEUE_MAX_MESSAGES]
            self._do(self.recsync.poll(now, ready))
            while self._to_verify:
                v = self._to_verify.pop(0)
                ok = await trio.to_thread.run_sync(self.recstore.finish, v.name, v.size, v.sha256)
                log.info("recording %s fetched: %s", v.name, "verified" if ok else "sha256 mismatch, discarded")
                self._do(self.recsync.verified(v.name, ok))
            wake = now + RECSYNC_POLL_S  # pieces to serve or fetch: the writer queues have no hook, look again soon
            if self.recsync.idle():  # else sleep until a message, a link change or a timer (issue 16: idle CPU)
                wake = max(wake, min(next_scan, self.recsync.wake_at(now) or math.inf,
                                     self.media_at + LIVE_QUIET_S if live else math.inf))
            with trio.move_on_at(wake):
                await self._wake.wait()
