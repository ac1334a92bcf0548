"""The node's state API: /api/meetings, /api/vote, ... (docs/api.md), over the replicated store.

Each handler validates its arguments (wrong or missing types -> 400, unknown ids -> 404), runs
the matching meshmeet.meeting.meetings operation inside the SyncService lock, and tells the
service that the store changed so the change is pushed to peers and published on the "state"
topic. Authority is the store's: a change this node's role may not make is refused with 403;
the domain's refusals (meshmeet.meeting.errors) map to 404 and 409 in `_write`, the one place.
GET query arguments arrive as strings, so integer and boolean arguments also accept their
decimal/"true"/"false" spellings (the checks live in state_args.py; the document handlers in
state_documents.py, provided with these). Filtered reads go through meshmeet.meeting.queries.
This module must never write SQL, never bypass the
store's change capture, and never touch the store outside the service lock.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import trio

from ..store.diskfull import DiskFull
from ..meeting import meetings as m
from ..meeting import queries as q
from ..meeting.authority import MAX_PEOPLE
from ..meeting.errors import Conflict, NotFound
from ..store.errors import AuthorityError, SyncError
from .contract import ApiError
from .state_args import (AGENDA_STATES, MAX_ID_CHARS, MAX_TEXT_CHARS, MEETING_STATES, SPEAK_STATES, arg_bool,
                         arg_id, arg_int, arg_str, bad, forbidden, not_found)
from .state_documents import DocumentApi
from ..node.provides import Provides

if TYPE_CHECKING:
    from ..node.node import Node
    from ..node.ports import AlertSender
    from ..node.sync_service import SyncService

log = logging.getLogger(__name__)

Handler = Callable[[dict], Awaitable[dict]]


# ----- the API -----------------------------------------------------------------------------------
class StateApi:
    """The state API's handlers, provided to the node (`provides()`); see docs/api.md.

    Provides: the state API handlers. Needs: the SyncService (store, lock, change push), the
    node's roster and links, and optionally the LoRa alert sender for urgent announcements."""

    def __init__(self, node: "Node", service: "SyncService", *, lora_alert: "AlertSender | None" = None) -> None:
        self.node = node
        self.svc = service
        self.lora_alert = lora_alert
        self.store = service.store
        self.document_api = DocumentApi(self)
        handlers: dict[str, Handler] = {
            "meetings": self.meetings, "meeting_create": self.meeting_create, "meeting_update": self.meeting_update,
            "meeting": self.meeting, "agenda_add": self.agenda_add, "agenda_update": self.agenda_update,
            "doc_add": self.document_api.doc_add, "docs": self.document_api.docs,
            "doc_readiness": self.document_api.doc_readiness, "doc": self.document_api.doc,
            "doc_chunk": self.document_api.doc_chunk,
            "checkin": self.checkin, "motion_open": self.motion_open, "vote": self.vote,
            "motion_close": self.motion_close, "announce": self.announce, "announcements": self.announcements,
            "feedback": self.feedback, "feedback_list": self.feedback_list, "feedback_reply": self.feedback_reply,
            "speak_request": self.speak_request, "speak_queue": self.speak_queue, "state": self.state,
            "roster": self.roster,
        }
        self._handlers = handlers

    def provides(self) -> Provides:
        return Provides(apis=self._handlers)

    # ----- plumbing --------------------------------------------------------------------------
    async def _write(self, tables: set[str], fn: Callable[[], Any]) -> Any:
        """Run a write under the lock; map store errors to 403/400; push and publish the change.

        While the disk is full this raises DiskFull (the node's API answers 507) without trying."""
        async with self.svc.lock:
            self.svc.check_writable(trio.current_time())
            try:
                result = fn()
            except DiskFull:
                self.svc.note_disk_full(trio.current_time())
                raise
            except AuthorityError as e:
                raise ApiError(403, "not_authorised", e.vi, e.en) from None
            except NotFound as e:
                raise ApiError(404, "not_found", e.vi, e.en) from None
            except Conflict as e:
                raise ApiError(409, e.code, e.vi, e.en) from None
            except SyncError as e:
                raise ApiError(400, "bad_request", e.vi, e.en) from None
            self.svc.local_changed(trio.current_time(), tables=tables)
            return result

    def need(self, table: str, key: Any, vi: str, en: str) -> dict[str, Any]:
        """The row, or ApiError 404 naming it (vi, en); call with the service lock held."""
        row = self.store.get(table, key)
        if row is None:
            not_found(vi, en, key if isinstance(key, str) else "/".join(key))
        return row

    def need_meeting(self, meeting_id: str) -> dict[str, Any]:
        """The meeting row, or ApiError 404; call with the service lock held."""
        return self.need("meetings", meeting_id, "cuộc họp", "meeting")

    def _site(self, node_id: str | None) -> str:
        member = self.node.roster.member_by_node_id(node_id or "")
        return member.site if member else ""

    def _require_hq(self, what_vi: str, what_en: str) -> None:
        if self.node.me.role != "hq":
            forbidden(f"Chỉ trung tâm (HQ) được {what_vi}", f"only HQ may {what_en}")

    def _current_item(self, meeting_id: str) -> str | None:
        current = q.current_items(self.store, meeting_id)
        return current[0]["id"] if current else None

    def _meeting_json(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "status": m.meeting_status(row), "current_item": self._current_item(row["id"]),
                "created_by_site": self._site(row["created_by"])}

    # ----- meetings ----------------------------------------------------------------------------
    async def meetings(self, args: dict) -> dict:
        async with self.svc.lock:
            rows = self.store.rows("meetings")
            out = [self._meeting_json(r) for r in rows]
        out.sort(key=lambda r: (r["starts"] or "", r["title"], r["id"]))
        return {"meetings": out}

    async def meeting_create(self, args: dict) -> dict:
        title = arg_str(args, "title")
        starts = arg_str(args, "starts", required=False, max_chars=64)
        location = arg_str(args, "location", required=False)
        return {"id": await self._write({"meetings"}, lambda: m.create_meeting(self.store, title, starts, location))}

    async def meeting_update(self, args: dict) -> dict:
        mid = arg_id(args, "id")
        status = arg_str(args, "status", required=False, choices=MEETING_STATES)
        item = arg_id(args, "current_item", required=False)
        title = arg_str(args, "title", required=False)
        if status is not None or item is not None:  # the title: HQ or the meeting's creator (the store checks)
            self._require_hq("đổi trạng thái hoặc mục hiện tại của cuộc họp",
                             "change a meeting's status or current item")

        def run() -> None:
            self.need_meeting(mid)
            with self.store.batch():
                values = {k: v for k, v in (("status", status), ("title", title)) if v is not None}
                if values:
                    self.store.write("meetings", mid, values)
                if item is not None:
                    row = self.need("agenda_items", item, "mục chương trình", "agenda item")
                    if row["meeting_id"] != mid:
                        bad("current_item", "không thuộc cuộc họp này", "is not an item of this meeting")
                    for cur in q.current_items(self.store, mid):
                        if cur["id"] != item:
                            self.store.write("agenda_items", cur["id"], {"status": "done"})
                    self.store.write("agenda_items", item, {"status": "current"})

        await self._write({"meetings", "agenda_items"}, run)
        async with self.svc.lock:
            return {"meeting": self._meeting_json(self.store.get("meetings", mid))}

    async def meeting(self, args: dict) -> dict:
        mid = arg_id(args, "id")
        async with self.svc.lock:
            row = self.need_meeting(mid)
            agenda = q.agenda(self.store, mid)
            per_hall = m.attendance(self.store, mid)
            motions = []
            for mo in q.motions(self.store, mid):
                motions.append({**mo, "result": _json_or_none(mo["result"]), "tally": m.tally(self.store, mo["id"])})
            return {
                "meeting": self._meeting_json(row),
                "agenda": agenda,
                "documents": m.documents(self.store, mid),
                "attendance": {"per_hall": [{"node": n, "site": self._site(n), "present": p}
                                            for n, p in sorted(per_hall.items())],
                               "total": sum(per_hall.values())},
                "motions": motions,
                "speaking_queue": self._queue(mid),
            }

    async def agenda_add(self, args: dict) -> dict:
        mid = arg_id(args, "meeting_id")
        title = arg_str(args, "title")
        position = arg_int(args, "position", required=False, low=1)

        def run() -> str:
            self.need_meeting(mid)
            return m.add_agenda_item(self.store, mid, title, position)

        return {"id": await self._write({"agenda_items"}, run)}

    async def agenda_update(self, args: dict) -> dict:
        item = arg_id(args, "id")
        values = {"title": arg_str(args, "title", required=False),
                  "position": arg_int(args, "position", required=False, low=1),
                  "status": arg_str(args, "status", required=False, choices=AGENDA_STATES)}
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            bad("title|position|status", "cần ít nhất một", "at least one is needed")

        def run() -> dict:
            self.need("agenda_items", item, "mục chương trình", "agenda item")
            self.store.write("agenda_items", item, values)
            return self.store.get("agenda_items", item)

        return {"item": await self._write({"agenda_items"}, run)}

    # ----- attendance and motions ----------------------------------------------------------------
    async def checkin(self, args: dict) -> dict:
        mid = arg_id(args, "meeting_id")
        member = arg_str(args, "member", required=False, max_chars=MAX_ID_CHARS)
        present = arg_int(args, "present", required=member is None, high=MAX_PEOPLE)

        def run() -> dict:
            self.need_meeting(mid)
            count = present
            if count is None:  # one member at a time: this hall's count goes up by one
                count = m.attendance(self.store, mid).get(self.store.node_id, 0) + 1
            cid = m.checkin(self.store, mid, count)
            return {"id": cid, "present": count}

        return await self._write({"attendance"}, run)

    async def motion_open(self, args: dict) -> dict:
        mid = arg_id(args, "meeting_id")
        title = arg_str(args, "title")
        rule = arg_str(args, "rule", required=False, choices=m.RULES) or "majority"

        def run() -> str:
            self.need_meeting(mid)
            return m.open_motion(self.store, mid, title, rule)

        return {"id": await self._write({"motions"}, run)}

    async def vote(self, args: dict) -> dict:
        motion = arg_id(args, "motion_id")
        choice = arg_str(args, "choice", choices=m.CHOICES)
        member = arg_str(args, "member", required=False, max_chars=64)
        count = arg_int(args, "count", required=False, low=1, high=MAX_PEOPLE)
        if member is not None and count not in (None, 1):
            bad("count", "một thành viên chỉ có một phiếu", "a member casts exactly one ballot")

        def run() -> dict:  # every refusal is meetings.vote's (NotFound 404, Conflict 409)
            m.vote(self.store, motion, choice, count or 1, member)
            return {"motion_id": motion, "choice": choice, "count": count or 1, "tally": m.tally(self.store, motion)}

        return await self._write({"ballots"}, run)

    async def motion_close(self, args: dict) -> dict:
        motion = arg_id(args, "motion_id")

        def run() -> dict:
            row = self.need("motions", motion, "biểu quyết", "motion")
            if row["status"] != "open":
                raise ApiError(409, "motion_closed", "Biểu quyết đã đóng", "the motion is already closed")
            t = m.close_motion(self.store, motion)
            return {"motion_id": motion, "result": "passed" if t["passed"] else "failed",
                    "yes": t["yes"], "no": t["no"], "abstain": t["abstain"], "turnout": t["turnout"],
                    "present": t["present"], "quorum_met": t["quorum"], "rule": t["rule"]}

        return await self._write({"motions"}, run)

    # ----- announcements and feedback ------------------------------------------------------------
    async def announce(self, args: dict) -> dict:
        text = arg_str(args, "text", max_chars=MAX_TEXT_CHARS)
        urgent = arg_bool(args, "urgent")
        zalo = arg_bool(args, "zalo")
        aid = await self._write({"announcements"}, lambda: m.announce(self.store, text, urgent, zalo))
        out: dict[str, Any] = {"id": aid, "urgent": urgent, "zalo": zalo}
        if urgent:
            out["lora"] = await self._lora_fallback(text, aid)
        return out

    async def _lora_fallback(self, text: str, announcement_id: str) -> dict:
        """Urgent and no IP link up: ask LoRa too (best effort; the announcement is stored anyway)."""
        if self.node.links.up_peers():
            return {"sent": False, "reason": "ip links up"}
        handler = self.lora_alert
        if handler is None:
            return {"sent": False, "reason": "no lora"}
        try:
            # The id lets halls show the alert once, even when sync later brings the announcement.
            return {"sent": True, "alert": await handler({"text": text, "announcement_id": announcement_id})}
        except ApiError as e:
            return {"sent": False, "reason": e.en}
        except Exception as e:  # best effort: the announcement itself already succeeded
            log.warning("urgent announcement: LoRa alert failed: %s", e)
            return {"sent": False, "reason": str(e)}

    async def announcements(self, args: dict) -> dict:
        async with self.svc.lock:
            rows = self.store.rows("announcements")
        rows.sort(key=lambda r: (-(r["at"] or 0.0), r["id"]))
        return {"announcements": [{**r, "urgent": bool(r["urgent"]), "zalo": bool(r.get("zalo"))} for r in rows]}

    async def feedback(self, args: dict) -> dict:
        text = arg_str(args, "text", max_chars=MAX_TEXT_CHARS)
        mid = arg_id(args, "meeting_id", required=False)

        def run() -> str:
            if mid is not None:
                self.need_meeting(mid)
            return m.feedback(self.store, text, mid)

        return {"id": await self._write({"feedback"}, run)}

    async def feedback_list(self, args: dict) -> dict:
        async with self.svc.lock:
            items = self.store.rows("feedback")
            replies = self.store.rows("replies")
        by_fb: dict[str, list] = {}
        for r in sorted(replies, key=lambda r: (r["at"] or 0.0, r["id"])):
            by_fb.setdefault(r["feedback_id"], []).append({**r, "site": self._site(r["node"])})
        items.sort(key=lambda r: (-(r["at"] or 0.0), r["id"]))
        # A resident's sealed contact and short code never leave through this list (issue 17).
        return {"feedback": [{**{k: v for k, v in f.items() if k not in ("contact", "code")},
                              "site": self._site(f["node"]), "replies": by_fb.get(f["id"], [])} for f in items]}

    async def feedback_reply(self, args: dict) -> dict:
        fid = arg_id(args, "feedback_id")
        text = arg_str(args, "text", max_chars=MAX_TEXT_CHARS)

        def run() -> str:
            self.need("feedback", fid, "ý kiến", "feedback")
            return m.reply(self.store, fid, text)

        return {"id": await self._write({"replies"}, run)}

    # ----- speaking queue --------------------------------------------------------------------------
    def _queue(self, mid: str) -> list[dict]:
        rows = q.speaking_requests(self.store, mid)
        rows.sort(key=lambda r: (r["state"] != "waiting", r["requested_at"] or 0.0, r["node"]))
        return [{**r, "site": self._site(r["node"])} for r in rows]

    async def speak_request(self, args: dict) -> dict:
        mid = arg_id(args, "meeting_id")
        state = arg_str(args, "state", required=False, choices=SPEAK_STATES) or "waiting"

        def run() -> list:
            self.need_meeting(mid)
            m.request_floor(self.store, mid, state)
            return self._queue(mid)

        return {"speaking_queue": await self._write({"speaking_queue"}, run)}

    async def speak_queue(self, args: dict) -> dict:
        mid = arg_id(args, "meeting_id")
        async with self.svc.lock:
            self.need_meeting(mid)
            return {"speaking_queue": self._queue(mid)}

    # ----- whole state and roster -------------------------------------------------------------------
    async def state(self, args: dict) -> dict:
        fmt = arg_str(args, "format", required=False, choices=("digest", "json")) or "digest"
        async with self.svc.lock:
            if fmt == "digest":
                return {"digest": self.store.digest(), "origins": self.store.version_vector()}
            return _without_private_columns(self.store.dump())

    async def roster(self, args: dict) -> dict:
        roster = self.node.roster
        now = time.time()
        members = [{"short_id": x.short_id, "node_id": x.node_id, "site": x.site, "role": x.role,
                    "priority": x.priority, "backup": x.backup, "seat": "claimed"} for x in roster.members()]
        seats = [{"short_id": s.short_id, "site": s.site, "role": s.role, "expires_at": s.expires_at,
                  "seat": "open" if s.expires_at > now else "expired"} for s in roster.open_seats(now=None)]
        return {"commune": roster.commune_name, "members": members, "open_seats": seats}


# columns a dump leaves out: a resident's reply code opens their reply, a contact is theirs (sealed
# to HQ); `state` is a read any LAN page may make, and the CLI has citizen_inbox for what it needs
PRIVATE_COLUMNS = {"feedback": ("code", "contact")}


def _without_private_columns(dump: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    for table, columns in PRIVATE_COLUMNS.items():
        for row in dump.get(table, []):
            for column in columns:
                row.pop(column, None)
    return dump


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


__all__ = ["StateApi"]
