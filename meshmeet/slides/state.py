"""Which page every hall's TV shows: the replicated page turns, and the slide record of a recording.

The chair's page turn is one add-only row of the replicated table `slides` (doc_id, page, at),
written by HQ only (sync/authority.py is the law at every replica); the newest row among a
meeting's documents, by (at, id), is the page in view, and page 0 ends the show. So only
"document D, page N" travels: by sync over IP, by a LoRa SLIDE message while IP is down
(lora/messages.py), and into each recording as a slide record (below), which replay hands to the
TV at its time (record.py). Every function here is pure over rows, except `show`, which writes
through the store's change capture. This module must never render or read a clock of its own
(callers pass `at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..meeting.authority import MAX_SLIDE_PAGE
from ..store.errors import SyncError
from ..meeting.meetings import new_id
from ..store.db import Store

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Slide:
    """The page in view: document, page (0: the show ended), when HQ turned to it, how it came."""

    doc_id: str
    page: int
    at: float
    row_id: str = ""
    via: str = "sync"  # "sync" (replicated row) or "lora" (a LoRa SLIDE message while IP was down)

    def as_json(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "page": self.page, "at": self.at, "id": self.row_id, "via": self.via}


def show(store: Store, doc_id: str, page: int, at: float) -> str:
    """HQ turns to `page` of `doc_id` (0 ends the show): one new row. The store refuses anyone else."""
    if store.get("documents", doc_id) is None:
        raise SyncError(f"Không tìm thấy tài liệu {doc_id}", f"no such document: {doc_id}")
    if type(page) is not int or not 0 <= page <= MAX_SLIDE_PAGE:
        raise SyncError(f"Số trang phải từ 0 đến {MAX_SLIDE_PAGE}", f"page must be 0..{MAX_SLIDE_PAGE}")
    row_id = new_id()
    store.write("slides", row_id, {"doc_id": doc_id, "page": page, "at": float(at)})
    return row_id


def _key(row: Row) -> tuple[float, str]:
    at = row.get("at")
    return (at if isinstance(at, (int, float)) else 0.0, str(row.get("id", "")))


def current(slide_rows: Iterable[Row], documents: Iterable[Row], meeting_id: str) -> Slide | None:
    """The newest page turn among the meeting's documents (None: no show yet)."""
    docs = {d["id"] for d in documents if d.get("meeting_id") == meeting_id}
    mine = [r for r in slide_rows if r.get("doc_id") in docs and type(r.get("page")) is int]
    if not mine:
        return None
    row = max(mine, key=_key)
    return Slide(row["doc_id"], row["page"], _key(row)[0], str(row["id"]))


def history(slide_rows: Iterable[Row], documents: Iterable[Row], meeting_id: str) -> list[Slide]:
    """Every page turn of the meeting in (at, id) order: the show's timeline."""
    docs = {d["id"] for d in documents if d.get("meeting_id") == meeting_id}
    rows = sorted((r for r in slide_rows if r.get("doc_id") in docs and type(r.get("page")) is int), key=_key)
    return [Slide(r["doc_id"], r["page"], _key(r)[0], str(r["id"])) for r in rows]
