"""What the node's API and status say of live media: the `floor` API, status["media"], and (only
with MESHMEET_TEST_HOOKS=1) `media_test_rate_cap` and `media_test_send` (a test plays a hostile
neighbour: raw bytes on the media service to one link peer).

MediaService (node/media_service.py) owns one and provides what it `provides()` as its own. The API's
checks (only HQ or the briefing root grants the floor) are a courtesy: every node checks a floor
grant's signature and the granter's right itself (meshmeet.media.floor). This module must never
change media state except through MediaService's floor and relay.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..api.contract import ApiError
from ..wire import services
from .provides import Provides

if TYPE_CHECKING:
    from .media_service import MediaService

log = logging.getLogger(__name__)


class MediaApi:
    def __init__(self, media: "MediaService", *, test_hooks: bool) -> None:
        self.m = media
        self.test_hooks = test_hooks

    def provides(self) -> Provides:
        """status["media"], `floor` (and `media_test_rate_cap` with the test hooks): part of MediaService's."""
        tests = {"media_test_rate_cap": self.test_rate_cap, "media_test_send": self.test_send} if self.test_hooks else {}
        return Provides(status={"media": self.status}, apis={"floor": self.floor, **tests})

    async def floor(self, args: dict) -> dict:
        """The `floor` API: grant, release, allow, disallow (HQ or the briefing root), status."""
        action = args.get("action", "status")
        if action not in ("grant", "release", "allow", "disallow", "status"):
            raise ApiError(400, "bad_action", "Cần action là grant, release, allow, disallow hoặc status",
                           "action must be grant, release, allow, disallow or status")
        if action != "status":
            me = self.m.node.me
            briefing_root = me.backup and self.m.tree is not None and self.m.tree.leads_briefing()
            if me.role != "hq" and not briefing_root:
                raise ApiError(403, "not_authorised", "Chỉ trụ sở hoặc điểm chủ trì họp khẩn được trao quyền phát biểu",
                               "only HQ or the briefing root may grant the floor")
            if action in ("allow", "disallow"):  # one more voice besides the holder and the chair
                self.m.voices.allow(self._find_member(str(args.get("site", ""))) if action == "allow" else "")
                return self.status_of_floor()
            holder = ""
            if action == "grant":
                holder = self._find_member(str(args.get("site", "")))
            body, upd = self.m.floor.issue(self.m.node.key, holder, self.m.root())
            self.m._flood(body)
            log.info("floor: granted to %s (%s)", holder or "the tree root", self.m._site(holder or self.m.root()))
            self.m._apply_floor(upd, trio.current_time())
        return self.status_of_floor()

    def _find_member(self, site: str) -> str:
        for member in self.m.node.roster.members():
            if site in (member.site, member.node_id):
                return member.node_id
        raise ApiError(404, "unknown_site", f"Không có điểm “{site}” trong danh sách xã", f"no site “{site}” on the roster")

    def status_of_floor(self) -> dict:
        root = self.m.root()
        out = self.m.floor.status(root)
        out["holder_site"] = self.m._site(out["holder"])
        out["voices"] = self.m.voices.status()
        return out

    async def test_rate_cap(self, args: dict) -> dict:
        """`media_test_rate_cap` (MESHMEET_TEST_HOOKS=1 only): emulate a narrow media link."""
        peer = str(args.get("peer", ""))
        if peer not in self.m.relay.links():
            peer = next((p for p in self.m.relay.links() if self.m._site(p) == peer), peer)
        if peer not in self.m.relay.links():
            raise ApiError(404, "unknown_link", "Không có liên kết media này", f"no media link to {peer}")
        bps = args.get("bps")
        self.m.relay.set_rate_cap(peer, None if bps is None else float(bps))
        self.m._kick()
        return {"peer": peer, "bps": bps}

    async def test_send(self, args: dict) -> dict:
        """`media_test_send {"peer": node id, "hex": bytes}` (MESHMEET_TEST_HOOKS=1 only): send raw
        bytes on service 0x40 to a link peer, as a hostile node of the roster would."""
        peer, data = str(args.get("peer", "")), bytes.fromhex(str(args.get("hex", "")))
        if peer not in self.m.node.links.up_peers():
            raise ApiError(404, "unknown_link", "Không có liên kết này", f"no link to {peer}")
        self.m.node.send(peer, services.MEDIA, data)
        return {"peer": peer, "bytes": len(data)}

    def status(self) -> dict:
        """status["media"]: the source, each link's quality and transport, the floor, recordings."""
        now = trio.current_time()
        root = self.m.root()
        holder = self.m.floor.holder(root)
        return {
            "source": holder,
            "source_site": self.m._site(holder),
            "source_link": self.m.floor.source_link,
            "links": [{"peer": s.peer, "site": self.m._site(s.peer), "layer": s.layer, "queue_ms": s.queue_ms,
                       "estimate_kbps": s.estimate_kbps, "audio_request_kbps": s.audio_request_kbps,
                       "audio_frame_ms": s.audio_frame_ms or 20, "audio_fec_percent": s.audio_fec_percent,
                       "audio_late_dropped": s.audio_late_dropped, "feedback": s.feedback,
                       "player_lag_ms": s.player_lag_ms,
                       **self.m.dgram.link_status(s.peer)}
                      for s in self.m.relay.stats(now)],
            "datagrams": self.m.dgram.status(),
            "subscribers": int(self.m._hub.get("subscribers", 0)),
            "presenters": int(self.m._hub.get("presenters", 0)),
            "browsers": self.m._hub.get("links", []),
            "floor": self.status_of_floor(),
            **self.m.recordings.status(now),
            "counters": {**self.m.counters, "voices_refused": self.m.relay.voices_refused},
        }
