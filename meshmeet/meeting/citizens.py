"""Residents' feedback on the replicated store: submit, look a reply up by short code, the page's
board (today's announcements and the agenda), the TV wall, hide/show, and HQ's inbox rows.

Every write goes through `Store.write`, so the law (meeting/authority.py) decides; ids of feedback
from a hall page are in the hall's namespace (`<random>-<node id>`), the only ones its secretary
may hide. What leaves here for a page or a TV never holds a contact or another resident's code.
This module must never write SQL and never return a `contact` column.
"""

from __future__ import annotations

import os
from typing import Any

from ..citizens import codes
from ..store.db import Store
from ..store.errors import SyncError
from . import queries
from .authority import namespaced_id
from .errors import NotFound

DAY_S = 86_400.0
WALL_ITEMS = 12
MAX_CODE_TRIES = 8


def submit(store: Store, text: str, source: str, contact: bytes | None, *,
           meeting_id: str | None = None, random=os.urandom, row_random: str | None = None) -> tuple[str, str]:
    """Write one resident's feedback; (feedback id, short code). `row_random` (16 hex digits) makes
    the id a function of its origin (a Zalo message id), so taking it in twice writes it once."""
    for _ in range(MAX_CODE_TRIES):
        code = codes.make_code(random(codes.RANDOM_BYTES))
        if not store.rows("feedback", "code = ?", (code,)):
            break
    else:  # 2^40 codes: only a broken random source gets here
        raise SyncError("Không tạo được mã tra cứu", "could not make a short code")
    fid = namespaced_id(row_random or random(8).hex(), store.node_id)
    held = store.get("feedback", fid) if row_random else None  # a fresh random id is new
    if held is not None:
        return fid, held["code"]
    store.write("feedback", fid, {"node": store.node_id, "meeting_id": meeting_id, "text": text,
                                  "at": store.clock(), "source": source, "code": code, "contact": contact})
    return fid, code


def submit_each(store: Store, entries: list[tuple[str, str, bytes | None]], *,
                random=os.urandom) -> list[tuple[str, str] | SyncError]:
    """Several residents' feedback, each `(text, source, sealed contact)`: in one transaction (one
    signed batch, one commit) when the law takes every one; when it refuses one, each in a
    transaction of its own, so that only the refused ones fail. Per entry, in order: (feedback id,
    short code), or the SyncError that refused it. A full disk raises DiskFull (nothing written)."""
    try:
        with store.batch():
            return list(_submit_group(store, entries, random))
    except SyncError as e:
        if len(entries) == 1:
            return [e]
    out: list[tuple[str, str] | SyncError] = []
    for entry in entries:
        try:
            with store.batch():
                out.extend(_submit_group(store, [entry], random))
        except SyncError as e:
            out.append(e)
    return out


def _submit_group(store: Store, entries: list[tuple[str, str, bytes | None]], random) -> list[tuple[str, str]]:
    """Write feedback rows with fresh random ids and short codes no row holds; (id, code) each."""
    codes_ = _fresh_codes(store, len(entries), random)
    ids = [namespaced_id(random(8).hex(), store.node_id) for _ in entries]
    store.write_many("feedback", [
        (fid, {"node": store.node_id, "meeting_id": None, "text": text, "at": store.clock(), "source": source,
               "code": code, "contact": contact})
        for fid, code, (text, source, contact) in zip(ids, codes_, entries)])
    return list(zip(ids, codes_))


def _fresh_codes(store: Store, n: int, random) -> list[str]:
    """`n` different short codes that no feedback row holds (one look-up for them all)."""
    out: list[str] = []
    for _ in range(MAX_CODE_TRIES):
        want = {codes.make_code(random(codes.RANDOM_BYTES)) for _ in range(n - len(out))} - set(out)
        if want:
            held = {r["code"] for r in store.rows("feedback", f"code IN ({','.join('?' * len(want))})", list(want))}
            out.extend(sorted(want - held))
        if len(out) == n:
            return out
    # 2^40 codes: only a broken random source gets here
    raise SyncError("Không tạo được mã tra cứu", "could not make a short code")


def _replies(store: Store, fid: str) -> list[dict[str, Any]]:
    rows = sorted(store.rows("replies", "feedback_id = ?", (fid,)), key=lambda r: (r["at"] or 0.0, r["id"]))
    return [{"text": r["text"], "at": r["at"]} for r in rows]


def lookup(store: Store, code: str) -> dict[str, Any] | None:
    """The feedback with this code, its replies (text and time only); None when unknown here."""
    rows = store.rows("feedback", "code = ?", (code,))
    if not rows:
        return None
    f = min(rows, key=lambda r: r["id"])
    return {"text": f["text"], "at": f["at"], "replies": _replies(store, f["id"])}


def hidden_ids(store: Store) -> set[str]:
    return {r["feedback_id"] for r in store.rows("feedback_moderation", "hidden = 1")}


def wall(store: Store, limit: int = WALL_ITEMS) -> list[dict[str, Any]]:
    """Residents' feedback for a TV: newest first, hidden ones left out, text and time only."""
    hidden = hidden_ids(store)
    rows = [r for r in store.rows("feedback", "source IN ('hall_page', 'zalo')") if r["id"] not in hidden]
    rows.sort(key=lambda r: (-(r["at"] or 0.0), r["id"]))
    return [{"id": r["id"], "text": r["text"], "at": r["at"], "source": r["source"],
             "answered": bool(store.rows("replies", "feedback_id = ?", (r["id"],)))} for r in rows[:limit]]


def set_hidden(store: Store, feedback_id: str, hidden: bool) -> None:
    if store.get("feedback", feedback_id) is None:
        raise NotFound("ý kiến", "feedback", feedback_id)
    store.write("feedback_moderation", feedback_id, {"hidden": int(hidden)})


def board(store: Store, now: float) -> dict[str, Any]:
    """What the resident page shows: announcements of the last day, the agenda of started meetings."""
    anns = [a for a in store.rows("announcements") if (a["at"] or 0.0) >= now - DAY_S]
    anns.sort(key=lambda a: (-(a["at"] or 0.0), a["id"]))
    meetings = []
    for mt in queries.started_meetings(store):
        items = queries.agenda(store, mt["id"])
        meetings.append({"title": mt["title"], "starts": mt["starts"],
                         "agenda": [{"title": i["title"], "status": i["status"]} for i in items]})
    meetings.sort(key=lambda x: (x["starts"] or "", x["title"] or ""))
    return {"announcements": [{"text": a["text"], "urgent": bool(a["urgent"]), "at": a["at"]} for a in anns],
            "meetings": meetings}


def inbox_rows(store: Store) -> list[dict[str, Any]]:
    """Residents' feedback for HQ's inbox with the sealed contact (HQ opens it: citizens/sealed.py)."""
    hidden = hidden_ids(store)
    rows = store.rows("feedback", "source IN ('hall_page', 'zalo')")
    rows.sort(key=lambda r: (-(r["at"] or 0.0), r["id"]))
    return [{**r, "hidden": r["id"] in hidden, "replies": _replies(store, r["id"])} for r in rows]


def zalo_announcements(store: Store) -> list[dict[str, Any]]:
    """Announcements HQ marked for the Zalo OA's followers."""
    return store.rows("announcements", "zalo = 1")


def replies_to_zalo(store: Store, taken_in_by: str) -> list[dict[str, Any]]:
    """The replies to feedback that came from the Zalo OA through node `taken_in_by` (that node's
    bridge, and only it, sends each back to its resident: HQ may hold the contact too)."""
    zalo = {r["id"] for r in store.rows("feedback", "source = 'zalo' AND node = ?", (taken_in_by,))}
    return [r for r in store.rows("replies") if r["feedback_id"] in zalo]
