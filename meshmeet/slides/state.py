"""Which page every hall's TV shows: the replicated page turns, and the slide record of a recording.

The chair's page turn is one add-only row of the replicated table `slides` (doc_id, page, at),
written by HQ only (sync/authority.py is the law at every replica); the newest row among a
meeting's documents, by (at, id), is the page in view, and page 0 ends the show. So only
"document D, page N" travels: by sync over IP, by a LoRa SLIDE message while IP is down
(lora/messages.py), and into each recording as a slide record (below), which replay hands to the
TV at its time. Every function here is pure over rows, except `show`, which writes through the
store's change capture. This module must never render, read a clock of its own (callers pass
`at`), or accept a record that does not parse into exactly its shape.

Slide record (a media message in a recording, docs/slides.md): `0x13 || msgpack([doc_id, page])`,
at most MAX_RECORD_BYTES.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import msgpack

from ..errors import MeshmeetError
from ..media.recorder import KIND_SLIDE_RECORD
from ..sync.authority import MAX_SLIDE_PAGE
from ..sync.errors import SyncError
from ..sync.meetings import new_id
from ..sync.store import Store

MAX_RECORD_BYTES = 96
DOC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Row = Mapping[str, Any]


class SlideError(MeshmeetError):
    """A slide record or request that does not parse or names nothing."""

    def __init__(self, en: str, vi: str = "Lệnh trình chiếu không hợp lệ") -> None:
        super().__init__(vi, en)


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


def encode_record(doc_id: str, page: int) -> bytes:
    if not DOC_ID_RE.match(doc_id) or not 0 <= page <= MAX_SLIDE_PAGE:
        raise ValueError("bad slide record fields")
    return bytes((KIND_SLIDE_RECORD,)) + msgpack.packb([doc_id, page])


def parse_record(data: bytes) -> tuple[str, int]:
    """(doc_id, page) of a slide record. Raises SlideError, never anything else."""
    if not isinstance(data, (bytes, bytearray)) or not data or data[0] != KIND_SLIDE_RECORD:
        raise SlideError("not a slide record")
    if len(data) > MAX_RECORD_BYTES:
        raise SlideError("slide record too large")
    try:
        obj = msgpack.unpackb(bytes(data[1:]), raw=False, strict_map_key=True)
    except Exception:  # msgpack raises several types on junk; all mean "not a record"
        raise SlideError("slide record is not msgpack") from None
    if not isinstance(obj, list) or len(obj) != 2:
        raise SlideError("slide record must be [doc_id, page]")
    doc_id, page = obj
    if not isinstance(doc_id, str) or not DOC_ID_RE.match(doc_id):
        raise SlideError("bad document id in slide record")
    if type(page) is not int or not 0 <= page <= MAX_SLIDE_PAGE:
        raise SlideError("bad page in slide record")
    return doc_id, page


def record_json(data: bytes) -> str:
    """A slide record as the JSON text replay sends to the TV page: {"type": "slide", ...}."""
    try:
        doc_id, page = parse_record(data)
    except SlideError:
        return json.dumps({"type": "slide", "error": "bad slide record"})
    return json.dumps({"type": "slide", "doc_id": doc_id, "page": page})
