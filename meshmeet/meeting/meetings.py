"""Meeting operations on the replicated store: what the HTTP API and CLI call.

Each function is one user action (create a meeting, add an agenda item or a document, check
in, open/vote/close a motion, announce, feedback and reply, chat, ask for the floor) written
through `Store.write`, which enforces authority; `record_holdings` and `readiness` keep and read
the replicated table of which node holds which document whole. Functions check the ids they are given and
raise SyncError (bilingual) for unknown ids or bad input. Counting a motion is tally.py's (the
one function every reader uses); a meeting made by a hall gets an id in the hall's namespace
(authority.py), the only meetings a hall may change. This module must never write SQL or
bypass the store's change capture.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from ..store import chunks as chunking
from . import tally as counting
from .authority import MAX_PEOPLE, namespaced_id
from ..store.errors import SyncError
from .errors import Conflict, NotFound
from ..store.db import Store

CHOICES = counting.CHOICES
RULES = ("majority", "two-thirds")
DEFAULT_MEETING_STATUS = "scheduled"  # a meeting whose status HQ has not set (a hall's new meeting)


def new_id() -> str:
    """A fresh random row id: 16 hex digits."""
    return os.urandom(8).hex()


def _need(store: Store, table: str, key: str, vi: str, en: str) -> dict[str, Any]:
    row = store.get(table, key)
    if row is None:
        raise NotFound(vi, en, key)
    return row


def create_meeting(store: Store, title: str, starts: str | None = None, location: str | None = None) -> str:
    if not title.strip():
        raise SyncError("Tiêu đề cuộc họp không được để trống", "meeting title must not be empty")
    hq = store.authority(store.node_id) == "hq"
    # Only HQ sets a meeting's status; a hall's meeting carries the hall's id in its own.
    mid = new_id() if hq else namespaced_id(new_id(), store.node_id)
    values: dict[str, Any] = {"title": title, "starts": starts, "created_by": store.node_id}
    if hq:
        values["status"] = DEFAULT_MEETING_STATUS
    if location is not None:
        values["location"] = location
    store.write("meetings", mid, values)
    return mid


def add_agenda_item(store: Store, meeting_id: str, title: str, position: int | None = None) -> str:
    _need(store, "meetings", meeting_id, "cuộc họp", "meeting")
    if position is None:
        position = len(store.rows("agenda_items", "meeting_id = ?", (meeting_id,))) + 1
    item = new_id()
    store.write("agenda_items", item, {"meeting_id": meeting_id, "position": position, "title": title,
                                       "status": "pending"})
    return item


def add_document(store: Store, meeting_id: str, source: Path | BinaryIO, name: str | None = None) -> str:
    """Chunk a file into the store (identical chunks kept once) and record the document."""
    _need(store, "meetings", meeting_id, "cuộc họp", "meeting")
    own = isinstance(source, (str, Path))
    stream: BinaryIO = open(source, "rb") if own else source  # type: ignore[arg-type]
    try:
        return store_document(store, meeting_id, stream, name or Path(getattr(stream, "name", "document")).name)
    finally:
        if own:
            stream.close()


def store_document(store: Store, meeting_id: str, stream: BinaryIO, name: str,
                   max_bytes: int | None = chunking.MAX_DOCUMENT_BYTES) -> str:
    """Chunk `stream` into the store and write its `documents` row under `meeting_id` (not checked:
    releases use an id that is no meeting row); None for `max_bytes` takes any size."""
    whole = hashlib.sha256()
    hashes: list[bytes] = []
    size = 0

    def pieces():
        nonlocal size
        for h, data in chunking.split(stream):
            size += len(data)
            if max_bytes is not None and size > max_bytes:
                raise SyncError("Tài liệu quá lớn (tối đa 200 MB)", "document too large (200 MB at most)")
            whole.update(data)
            hashes.append(h)
            yield h, data

    doc = new_id()
    with store.batch():
        store.store_chunks(pieces())
        store.write("documents", doc, {
            "meeting_id": meeting_id, "name": name, "size": size, "sha256": whole.hexdigest(),
            "chunk_bytes": chunking.CHUNK_BYTES, "chunks": chunking.join_hashes(hashes)})
    return doc


def documents(store: Store, meeting_id: str) -> list[dict[str, Any]]:
    """Per document: id, name, size, sha256, chunks held / total."""
    out = []
    for doc in store.rows("documents", "meeting_id = ?", (meeting_id,)):
        held, total = store.document_progress(doc["id"])
        out.append({"id": doc["id"], "name": doc["name"], "size": doc["size"], "sha256": doc["sha256"],
                    "chunks_held": held, "chunks_total": total})
    return out


def record_holdings(store: Store, candidates: Iterable[str] | None = None) -> tuple[list[str], set[str]]:
    """Record, for this node only, each live document it now holds whole and has not recorded yet.

    `candidates` limits the check to those document ids (None: every live document). Returns the
    ids recorded now and the ids still incomplete here (the next call's candidates). A holding
    names the document's SHA-256, so it counts only while the document row still says so.
    """
    mine = {r["doc_id"] for r in store.rows("doc_holdings", "node = ?", (store.node_id,))}
    ids = [d["id"] for d in store.rows("documents")] if candidates is None else sorted(candidates)
    recorded: list[str] = []
    incomplete: set[str] = set()
    with store.batch():
        for doc_id in ids:
            doc = store.get("documents", doc_id)
            if doc is None or doc_id in mine:
                continue
            held, total = store.document_progress(doc_id)
            if held < total:
                incomplete.add(doc_id)
                continue
            store.write("doc_holdings", (doc_id, store.node_id), {"sha256": doc["sha256"], "at": store.clock()})
            recorded.append(doc_id)
    return recorded, incomplete


def readiness(store: Store, meeting_id: str, nodes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per node: {"ready": True | False | None, "held": documents held whole, "total": documents}.

    This node counts its own chunks (exact). Another node is ready when it recorded a holding of
    every live document of the meeting (with the document's current SHA-256); not ready when
    some are missing and this store holds at least one change from it; None when nothing from
    it has arrived here yet (not heard).
    """
    docs = store.rows("documents", "meeting_id = ?", (meeting_id,))
    total = len(docs)
    held: dict[str, int] = {}
    for doc in docs:
        for row in store.rows("doc_holdings", "doc_id = ?", (doc["id"],)):
            if row["sha256"] == doc["sha256"]:
                held[row["node"]] = held.get(row["node"], 0) + 1
    mine = sum(1 for doc in docs if _whole(store, doc["id"]))
    heard = set(store.version_vector())
    out: dict[str, dict[str, Any]] = {}
    for node in nodes:
        if node == store.node_id:
            out[node] = {"ready": mine == total, "held": mine, "total": total, "source": "self"}
            continue
        n = held.get(node, 0)
        ready: bool | None = True if n == total else (False if node in heard else None)
        out[node] = {"ready": ready, "held": n, "total": total,
                     "source": "replicated" if ready is not None else "unknown"}
    return out


def _whole(store: Store, doc_id: str) -> bool:
    got, total = store.document_progress(doc_id)
    return got == total


def meeting_status(row: dict[str, Any]) -> str:
    """A meeting row's status; one HQ has not set yet (a hall's new meeting) is scheduled."""
    return row.get("status") or DEFAULT_MEETING_STATUS


def checkin(store: Store, meeting_id: str, present: int, at: float | None = None) -> str:
    """Record this hall's head count; the latest check-in of each hall counts."""
    _need(store, "meetings", meeting_id, "cuộc họp", "meeting")
    if type(present) is not int or not 0 <= present <= MAX_PEOPLE:
        raise SyncError(f"Số người có mặt phải là số nguyên 0..{MAX_PEOPLE}",
                        f"present must be an integer 0..{MAX_PEOPLE}")
    cid = new_id()
    store.write("attendance", cid, {"meeting_id": meeting_id, "node": store.node_id, "present": present,
                                    "at": store.clock() if at is None else at})
    return cid


def attendance(store: Store, meeting_id: str) -> dict[str, int]:
    """Present per hall: its latest check-in (by time, then id)."""
    return counting.head_counts(store.rows("attendance", "meeting_id = ?", (meeting_id,)))


def open_motion(store: Store, meeting_id: str, title: str, rule: str = "majority") -> str:
    _need(store, "meetings", meeting_id, "cuộc họp", "meeting")
    if rule not in RULES:
        raise SyncError("Quy tắc phải là majority hoặc two-thirds", "rule must be majority or two-thirds")
    mid = new_id()
    store.write("motions", mid, {"meeting_id": meeting_id, "title": title, "rule": rule, "status": "open"})
    return mid


def vote(store: Store, motion_id: str, choice: str, count: int = 1, member: str | None = None) -> None:
    """Cast this hall's tally for one choice (member=None) or one member's ballot; once only.

    The one place a vote is checked before it is written (the replicated law, rules.py, checks a
    ballot's shape wherever it arrives): NotFound, Conflict("motion_closed" | "already_voted" |
    "over_checkin") or SyncError for a malformed ballot."""
    motion = _need(store, "motions", motion_id, "biểu quyết", "motion")
    if motion["status"] != "open":
        raise Conflict("motion_closed", "Biểu quyết đã đóng", "the motion is closed")
    if choice not in CHOICES:
        raise SyncError("Lựa chọn phải là yes, no hoặc abstain", "choice must be yes, no or abstain")
    if type(count) is not int or not 1 <= count <= MAX_PEOPLE or (member is not None and count != 1):
        raise SyncError("Số phiếu không hợp lệ", "invalid ballot count")
    voter = f"#{choice}" if member is None else f"@{member}"
    key = (motion_id, store.node_id, voter)
    with store.batch():
        if store.get("ballots", key) is not None:
            raise Conflict("already_voted", "Đã bỏ phiếu cho biểu quyết này", "a ballot was already cast for this motion")
        if count > ballots_left(store, motion_id):
            raise Conflict("over_checkin", OVER_CHECKIN_VI, OVER_CHECKIN_EN)
        store.write("ballots", key, {"choice": choice, "count": count, "at": store.clock()})


OVER_CHECKIN_VI = "Số phiếu vượt quá số người điểm danh của điểm cầu"
OVER_CHECKIN_EN = "more ballots than this hall's check-in"


def ballots_left(store: Store, motion_id: str) -> int:
    """How many more ballots of this node would count on the motion: its latest check-in for the
    meeting minus its ballots counted so far (a ballot beyond it is stored but not counted)."""
    motion = _need(store, "motions", motion_id, "biểu quyết", "motion")
    present = attendance(store, motion["meeting_id"]).get(store.node_id, 0)
    counted = tally(store, motion_id)["per_node"].get(store.node_id, {})
    return max(0, present - sum(counted.values()))


def tally(store: Store, motion_id: str) -> dict[str, Any]:
    """Counts, turnout against attendance (quorum), the outcome under the motion's rule, and the
    ballots not counted (late, over a hall's check-in): tally.count_motion over this store's rows."""
    motion = _need(store, "motions", motion_id, "biểu quyết", "motion")
    return counting.count_motion(motion, store.rows("ballots", "motion_id = ?", (motion_id,)),
                                 attendance(store, motion["meeting_id"]))


def close_motion(store: Store, motion_id: str) -> dict[str, Any]:
    """Close (HQ only) and record the result as counted here, with the ballots it counted: from
    then on exactly those count at every replica (tally.py)."""
    motion = _need(store, "motions", motion_id, "biểu quyết", "motion")
    if motion["status"] != "open":
        raise SyncError("Biểu quyết đã đóng", "the motion is already closed")
    result = tally(store, motion_id)
    store.write("motions", motion_id, {"status": "closed", "result": counting.record_of(result)})
    return {**result, "closed": True}


def announce(store: Store, text: str, urgent: bool = False, zalo: bool = False) -> str:
    """`zalo`: the Zalo OA bridge sends it to the OA's followers (issue 17)."""
    aid = new_id()
    values = {"text": text, "urgent": int(urgent), "at": store.clock()}
    if zalo:
        values["zalo"] = 1
    store.write("announcements", aid, values)
    return aid


def feedback(store: Store, text: str, meeting_id: str | None = None) -> str:
    if not text.strip():
        raise SyncError("Ý kiến không được để trống", "feedback must not be empty")
    fid = new_id()
    store.write("feedback", fid, {"node": store.node_id, "meeting_id": meeting_id, "text": text,
                                  "at": store.clock(), "source": "node", "code": None, "contact": None})
    return fid


def reply(store: Store, feedback_id: str, text: str) -> str:
    _need(store, "feedback", feedback_id, "ý kiến", "feedback")
    rid = new_id()
    store.write("replies", rid, {"feedback_id": feedback_id, "node": store.node_id, "text": text,
                                 "at": store.clock()})
    return rid


def chat(store: Store, meeting_id: str, text: str) -> str:
    _need(store, "meetings", meeting_id, "cuộc họp", "meeting")
    cid = new_id()
    store.write("chat", cid, {"meeting_id": meeting_id, "node": store.node_id, "text": text, "at": store.clock()})
    return cid


def request_floor(store: Store, meeting_id: str, state: str = "waiting", node: str | None = None) -> None:
    """Ask for (or withdraw) this hall's turn to speak; HQ may set any hall's state."""
    _need(store, "meetings", meeting_id, "cuộc họp", "meeting")
    values: dict[str, Any] = {"state": state}
    if state == "waiting":
        values["requested_at"] = store.clock()
    store.write("speaking_queue", (meeting_id, node or store.node_id), values)
