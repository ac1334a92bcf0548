"""The trio driver for live media in the node: relay along the tree, the floor, the browsers' hub.

Feeds meshmeet.media.relay.MediaRelay (links = this node's *tree* neighbours, simulcast) with chunks
from the link towards the floor holder (service 0x40) or, at the holder, from the local presenter
page; drains each link's queues as the relay's pop()/wake_at() allow, keeping at most
LINK_QUEUE_MAX_MESSAGES in the link layer so that congestion shows up as relay queue delay; hands
every accepted chunk once to the web gateway (topic "media"), where MediaHub fans it out to hall
pages and records it. Floor grants and source beacons (meshmeet.media.floor) decide which link is
the source. Adds "media" to status, the `floor` API, and (only with MESHMEET_TEST_HOOKS=1)
`media_test_rate_cap`. Recordings are node/media_recordings.py's, fed from here. A tree link whose
datagram channel (node/datagram_service.py) is in datagram mode gets live media as datagrams, at
once, not through the link's writer queue; media from datagrams is handled like media from the
link; receiver reports reach the relay's `link_feedback` and status.

This module must never decide quality or parse media bytes itself (the sans-IO cores do), never
block the link handlers, and never take chunks from a link that does not lead to the holder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import TYPE_CHECKING

import trio

from ..media import chunk as C
from ..media.floor import FLOOR_KINDS, LOCAL, SOURCE_RESET, Floor, FloorError, FloorUpdate, for_peer as floor_for_peer, parse as parse_floor
from ..media.recsync import RECSYNC_KINDS
from ..media.datagram_channel import DATAGRAM, Deliver, FeedbackArrived, KeyframeWanted, ModeChanged
from ..media.datagram import OVERHEAD_BYTES as DATAGRAM_OVERHEAD_BYTES
from ..media.linkmodel import MESH_LINK_FRAMING_BYTES
from ..media.relay import MediaRelay, Outgoing
from ..web.media_routes import MEDIA_TOPIC, STATS_TOPIC, UP_TOPIC, node_media_setup
from ..wire import services
from .datagram_service import DatagramService
from .media_api import MediaApi
from .media_recordings import MediaRecordings
from .media_voices import MediaVoices, is_voice_audio
from .provides import Provides
from ..media.voices import VOICE_KINDS

if TYPE_CHECKING:
    from collections.abc import Callable
    from .node import Node
    from .ports import StateReader, TreeView

log = logging.getLogger(__name__)

TEST_HOOKS_ENV = "MESHMEET_TEST_HOOKS"
# a pass at least every RESYNC_S (tree changes and inputs wake it at once); every TREE_POLL_S for CAPS_SETTLE_S after
TREE_POLL_S, CAPS_SETTLE_S, RESYNC_S = 0.1, 5.0, 1.0  # a link change (a peer's capabilities come then, with no hook)
LINK_QUEUE_MAX_MESSAGES = 64  # media messages allowed to wait in a link's writer queue (two keyframes in pieces; CPU stalls on a loaded host)
STALL_S = 0.02  # the media step ran this much later than due: this process stalled (relay.process_stalled)
LINK_BUSY_POLL_S = 0.002  # retry a link whose writer queue was full after this long
CONFIG_REPEAT_S = 5.0  # the holder repeats its decoder configs (nodes that reset get them back)
BROWSERS = "browsers"  # the link name keyframe requests from local hall pages arrive on
UDP_IP_HEADER_BYTES = 28  # IPv4 + UDP: every datagram pays them (TCP links amortise theirs over segments)
DATAGRAM_FRAMING_BYTES = DATAGRAM_OVERHEAD_BYTES + UDP_IP_HEADER_BYTES


class MediaService:
    """Owns this node's media relay and floor state (module docstring); provides: `provides()`.
    Needs: the node's links, the tree (`TreeView`) media travels on, the store (`StateReader`)."""

    def __init__(self, node: "Node", *, tree: "TreeView | None" = None, state: "StateReader | None" = None,
                 knows_voices: "Callable[[str], bool] | None" = None, signs_beacons: "Callable[[str], bool] | None" = None) -> None:
        self.node = node
        self.tree = tree  # the links media travels on; None: no tree links (tests)
        self.state = state  # the started meeting names the recording; None: named by date
        self.relay = MediaRelay(source=None, keep_accepted=True)
        self.floor = Floor(node.key, node.roster.commune_id, self._may_grant, lambda n: node.roster.public_key_of(n),
                           counter_start=int(time.time()))
        self.signs_beacons = signs_beacons or (lambda peer: False)  # the peer names floor.FEATURE
        self._tree_links: set[str] = set()
        self._root: str | None = None
        self._presenter_configs: dict[tuple[int, int], bytes] = {}
        self._next_configs = math.inf
        self._next_local_configs = 0.0  # when this node's pages get its held configs again (not speaking)
        self._hub: dict = {}
        self._local_taps: list[Callable[[bytes], None]] = []  # also get what goes to the local presenter
        self._wake = trio.Event()
        self._kicked_at = math.inf
        self._next_tick, self._quiet, self._settle_until = trio.current_time(), False, 0.0  # _quiet: at the last tick
        self.counters = {"chunks_in": 0, "not_from_source": 0, "presenter_refused": 0, "format_errors": 0,
                         "floor_refused": 0, "published": 0, "publish_dropped": 0}
        self.recordings = MediaRecordings(node, state=state, tree_neighbours=self._tree_neighbours,
                                          counters=self.counters)
        self.dgram = DatagramService(node, on_event=self._on_datagram_event)
        self.voices = MediaVoices(self, knows_voices)  # voices 1 and 2 (the chair, the extra site)
        self.api = MediaApi(self, test_hooks=os.environ.get(TEST_HOOKS_ENV) == "1")  # `floor`, status["media"]
        if tree is not None:  # a new root, parent or child: the next pass now
            tree.on_change(lambda _changed: self._kick())

    def add_local_tap(self, tap: "Callable[[bytes], None]") -> None:
        """`tap(message)` also gets what is sent to this node's local presenter (the ingest)."""
        self._local_taps.append(tap)

    def provides(self) -> Provides:
        setup = node_media_setup(recordings_dir=self.recordings.recordings_dir,
                                 meeting_id=lambda: self.recordings.meeting_id)
        own = Provides(services={services.MEDIA: self._on_message}, link_listeners=(self._on_link_change,),
                       web_setups=(setup,), topics={UP_TOPIC: self.from_browsers, STATS_TOPIC: self._from_hub_stats})
        return own + self.dgram.provides() + self.api.provides()  # + 0x80 datagram offers; `floor`, status["media"]

    # ----- who is who ----------------------------------------------------------------------
    def root(self) -> str:
        return self.tree.root() if self.tree is not None else self.node.key.node_id

    def _tree_neighbours(self) -> set[str]:
        return set() if self.tree is None else set(self.tree.neighbours()) & set(self.node.links.up_peers())

    def _may_grant(self, node_id: str) -> bytes | None:
        """Roster authority: HQ, or a backup site (which may run a briefing), may grant the floor."""
        m = self.node.roster.member_by_node_id(node_id)
        return m.public_key if m is not None and (m.role == "hq" or m.backup) else None

    def _site(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        m = self.node.roster.member_by_node_id(node_id)
        return m.site if m else None

    # ----- inputs ----------------------------------------------------------------------------
    def _on_link_change(self, peer: str, up: bool) -> None:
        self._settle_until = trio.current_time() + CAPS_SETTLE_S
        if not up:
            self._drop_link(peer)
        self.recordings.link_change(peer, up)
        self._kick()

    def _on_message(self, peer: str, body: bytes) -> None:
        now = trio.current_time()
        if body and body[0] in FLOOR_KINDS:
            self._on_floor(peer, body, now)
            return
        if body and body[0] in RECSYNC_KINDS:
            self.recordings.on_message(peer, body)
            return
        if body and body[0] in VOICE_KINDS:
            self.voices.on_message(peer, body, now)
            return
        try:
            kind = C.peek_kind(body)
            if kind in C.UPSTREAM_KINDS:  # keyframe / audio rate requests
                self._send_out(self.relay.receive(peer, body, now))
            elif kind != C.KIND_PADDING:
                if peer != self.floor.source_link and not is_voice_audio(body):
                    self.counters["not_from_source"] += 1
                    return
                self.counters["chunks_in"] += 1
                if kind == C.KIND_CHUNK:
                    self.recordings.media_at = now
                self._send_out(self.relay.receive(peer, body, now))
                self._publish_accepted()
        except C.MediaFormatError as e:
            self.counters["format_errors"] += 1
            log.debug("media from %s: %s", peer, e.en)
        self._kick()

    def _on_datagram_event(self, peer: str, ev: object) -> None:
        now = trio.current_time()
        if isinstance(ev, Deliver):
            self._on_message(peer, ev.message)
        elif isinstance(ev, KeyframeWanted):  # a video frame was lost on the way: ask upstream
            if peer in self._tree_links:
                self._send_out(self.relay.receive(peer, C.encode_keyframe_request(C.KeyframeRequest(ev.layer)), now))
        elif isinstance(ev, FeedbackArrived):
            feedback = getattr(self.relay, "link_feedback", None)
            if callable(feedback) and peer in self._tree_links:
                self.relay.set_path_rtt(peer, self.node.links.path_min_rtt_s(peer))
                fb = ev.feedback
                feedback(peer, now, fb.loss_fraction, fb.jitter_s, fb.delay_trend_s, fb.rtt_s)
            depth = getattr(self.relay, "audio_redundancy", None)  # the adaptation's redundancy depth
            if callable(depth) and peer in self._tree_links:
                self.dgram.set_redundancy(peer, int(depth(peer, now)))
        elif isinstance(ev, ModeChanged):
            log.info("media to %s (%s) now over %s", peer, self._site(peer), ev.mode)
            if peer in self._tree_links:  # rates on this link count what each message costs there
                framing = DATAGRAM_FRAMING_BYTES if ev.mode == DATAGRAM else MESH_LINK_FRAMING_BYTES
                self.relay.set_link_framing(peer, framing)
        if not (isinstance(ev, FeedbackArrived) and self.relay.quiet(now)):  # idle links report 4x/s:
            self._kick()  # a quiet relay has nothing to pace out, it judges the report at its next tick

    def _on_floor(self, peer: str, body: bytes, now: float) -> None:
        root = self.root()
        try:
            upd = self.floor.receive(peer, parse_floor(body), root, now, signed_only=bool(self.signs_beacons(peer)))
        except FloorError as e:
            self.counters["floor_refused"] += 1
            log.warning("floor message from %s refused: %s", peer, e.en)
            return
        if upd.forward:
            self._flood(body, exclude=peer)
        if upd.holder_changed:
            log.info("floor: %s (%s) holds the floor now", self.floor.holder(root), self._site(self.floor.holder(root)))
        self._apply_floor(upd, now)

    async def from_browsers(self, data: object) -> None:
        """Presenter chunks/configs and hall keyframe requests from this node's web gateway."""
        if not isinstance(data, (bytes, bytearray)):
            return
        data = bytes(data)
        now = trio.current_time()
        try:
            kind = C.peek_kind(data)
            if kind in C.UPSTREAM_KINDS:  # keyframe / audio rate requests
                self._send_out(self.relay.receive(BROWSERS, data, now))
            elif kind in (C.KIND_CHUNK, C.KIND_CONFIG):
                if kind == C.KIND_CONFIG:
                    cfg = C.parse(data)
                    assert isinstance(cfg, C.DecoderConfig)
                    self._presenter_configs[(cfg.track, cfg.layer)] = data
                if self.floor.source_link != LOCAL:
                    if self.voices.from_presenter(data, now):  # it speaks as the chair or the extra voice
                        self.recordings.media_at = now
                        return
                    self.counters["presenter_refused"] += 1  # this site may not speak
                    return
                if kind == C.KIND_CONFIG:
                    # a page starts with its configs: repeat the audio request it missed (a young
                    # weak link wants 40 ms frames from the first one; the refresh came 2 s late)
                    self.relay.source_reconnected()
                if kind == C.KIND_CHUNK:
                    self.recordings.media_at = now
                self._send_out(self.relay.receive(LOCAL, data, now))
                self._publish_accepted()
        except C.MediaFormatError:
            self.counters["format_errors"] += 1
        self._kick()

    async def _from_hub_stats(self, data: object) -> None:
        try:
            stats = json.loads(data) if isinstance(data, (str, bytes)) else None
        except ValueError:
            return
        if isinstance(stats, dict):
            self._hub = stats

    # ----- outputs ---------------------------------------------------------------------------
    def _kick(self) -> None:
        if not self._wake.is_set():
            self._kicked_at = trio.current_time()  # the step is due now: later is this process's stall
        self._wake.set()

    def _send_out(self, outs: list[Outgoing]) -> None:
        for o in outs:
            if o.link == LOCAL:
                self._publish(o.data)  # to the presenter page, through the hub
                for tap in self._local_taps:
                    tap(o.data)
            else:
                self.node.send(o.link, services.MEDIA, o.data)

    def _publish(self, data: bytes) -> None:
        gw = self.node.gateway
        if gw is not None and gw.try_publish(MEDIA_TOPIC, data):
            self.counters["published"] += 1
        else:
            self.counters["publish_dropped"] += 1

    def _publish_accepted(self) -> None:
        for data in self.relay.take_accepted():
            self._publish(data)

    def _flood(self, body: bytes, *, exclude: str | None = None) -> None:
        for peer in self._tree_links - {exclude}:  # a beacon signed or 0x11, as each peer takes it
            out = floor_for_peer(body, bool(self.signs_beacons(peer)))
            if out is not None:
                self.node.send(peer, services.MEDIA, out)

    # ----- floor -----------------------------------------------------------------------------
    def _apply_floor(self, upd: FloorUpdate, now: float) -> None:
        if upd.holder_changed:
            self.relay.set_source(self.floor.source_link)
            self._publish(SOURCE_RESET)
            self._inject_presenter_configs(now)
            self._send_out(self.relay.request_keyframes(now))
        elif upd.source_changed:
            self.relay.move_source(self.floor.source_link)
            self._send_out(self.relay.request_keyframes(now))
        self._kick()

    def _inject_presenter_configs(self, now: float) -> None:
        if self.floor.source_link == LOCAL:
            for key in sorted(self._presenter_configs):
                self._send_out(self.relay.receive(LOCAL, self._presenter_configs[key], now))
        for cfg in self.voices.presenter_configs():
            self._send_out(self.relay.receive(LOCAL, cfg, now))
        self._publish_accepted()
        self._next_configs = now + CONFIG_REPEAT_S

    # ----- tree ------------------------------------------------------------------------------
    def _drop_link(self, peer: str) -> None:
        if peer in self._tree_links:
            self._tree_links.discard(peer)
            self.relay.remove_link(peer)
        upd = self.floor.link_gone(peer)
        if upd.source_changed:
            self.relay.move_source(None)
        self.voices.link_gone(peer)

    def _sync_tree(self, now: float) -> None:
        root = self.root()
        if root != self._root:
            self._root = root
            self._apply_floor(self.floor.root_changed(root), now)
        want = self._tree_neighbours()
        for peer in self._tree_links - want:
            self._drop_link(peer)
        for peer in want - self._tree_links:
            self._tree_links.add(peer)
            self._send_out(self.relay.add_link(peer, now, simulcast=True))
            grant = self.floor.current_grant_bytes()
            if grant is not None:
                self.node.send(peer, services.MEDIA, grant)
        self.voices.sync(now)

    def _beacon(self, now: float) -> float:  # beacons and config repeats due; when configs are due again
        body = self.floor.beacon_due(self.root(), now)
        if body is not None:
            self._flood(body)
        speaks = self.floor.source_link == LOCAL or self.voices.mine()
        if speaks:
            if now >= self._next_configs and self._presenter_configs:
                self._inject_presenter_configs(now)
            return self._next_configs if self._presenter_configs else math.inf
        if now >= self._next_local_configs:
            # relays pass a repeated config only to a link that lacks it (relay_link.queue_config):
            # this node's own pages get what it holds again (a publish before the gateway was up is lost)
            self._next_local_configs = now + CONFIG_REPEAT_S
            for cfg in self.relay.configs():
                self._publish(cfg)
        return self._next_local_configs

    # ----- the drain task --------------------------------------------------------------------
    def _link_backlog(self, peer: str) -> int:
        return self.node.links.queue_depth(peer)

    def _drain(self, peer: str, now: float) -> float | None:
        """Hand the link what the relay allows; when to come back (None: on new input).
        In datagram mode messages leave at once (no writer queue: congestion shows up as loss and
        delay in receiver reports); configs, and what does not fit datagrams, still take the link."""
        while True:
            dgram = self.dgram.mode(peer) == DATAGRAM
            if not dgram and self._link_backlog(peer) >= LINK_QUEUE_MAX_MESSAGES:
                return now + LINK_BUSY_POLL_S
            data = self.relay.pop(peer, now)
            if data is None:
                return self.relay.wake_at(peer, now)
            # stamped when it leaves, not when this step began (a loaded step runs long: a path delay)
            if not (dgram and self._send_datagram(peer, data, trio.current_time())):
                self.node.send(peer, services.MEDIA, data)

    def _send_datagram(self, peer: str, data: bytes, now: float) -> bool:
        try:
            return self.dgram.send_media(peer, data, now)
        except C.MediaFormatError:  # the relay made it, so it cannot be; let the link carry it
            return False

    def step(self, now: float) -> float:
        """One pass: tree, beacons, timers, drains. Returns when to run again."""
        self._sync_tree(now)
        configs_at = self._beacon(now)
        waking = self._quiet and not self.relay.quiet(now)  # media back after a quiet spell (1 s ticks)
        if now >= self._next_tick or waking:  # drain first (waking: judge first, nothing leaves at an old level)
            for peer in () if waking else self.relay.links():  # after a stall of this process, judge the
                self._drain(peer, now)                          # queue the link left, not the one the stall left
            self._send_out(self.relay.tick(now))
            self._next_tick = self.relay.next_deadline(now)
            self._quiet = self.relay.quiet(now)
        wake = min(self._next_tick, now + (TREE_POLL_S if now < self._settle_until else RESYNC_S), configs_at)
        for nb in (self.floor.next_beacon_at(self.root()), self.voices.beacon(now)):
            if nb is not None:
                wake = min(wake, max(nb, now))
        for peer in self.relay.links():
            w = self._drain(peer, now)
            if w is not None:
                wake = min(wake, w)
        return wake

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.dgram.run)
            nursery.start_soon(self.recordings.run)
            while True:
                self._wake = trio.Event()
                wake = self.step(trio.current_time())
                with trio.move_on_at(wake):
                    await self._wake.wait()
                now = trio.current_time()  # audio does not pay for this process running late
                due = min(wake, self._kicked_at) if self._wake.is_set() else wake
                if now - due > STALL_S:
                    self.relay.process_stalled(due, now)
