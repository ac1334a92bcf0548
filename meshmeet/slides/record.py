"""The slide record: the page in view as one record of a meeting's recording (docs/slides.md).

`0x13 || msgpack([doc_id, page])`, at most MAX_RECORD_BYTES. The node hands one to its media hub
whenever the page changes; the recorder writes it between the media at its time, and replay sends
it to the TV page as JSON text. Pure functions; this module must never accept a record that does
not parse into exactly this shape, nor raise anything but SlideError on hostile bytes.
"""

from __future__ import annotations

import json
import re

import msgpack

from ..errors import MeshmeetError
from ..recording.recorder import KIND_SLIDE_RECORD

MAX_RECORD_BYTES = 96
MAX_PAGE = 10_000  # = sync.authority.MAX_SLIDE_PAGE
DOC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

__all__ = ["KIND_SLIDE_RECORD", "MAX_RECORD_BYTES", "DOC_ID_RE", "SlideError", "encode_record", "parse_record",
           "record_json"]


class SlideError(MeshmeetError):
    """A slide record or request that does not parse or names nothing."""

    def __init__(self, en: str, vi: str = "Lệnh trình chiếu không hợp lệ") -> None:
        super().__init__(vi, en)


def encode_record(doc_id: str, page: int) -> bytes:
    if not DOC_ID_RE.match(doc_id) or not 0 <= page <= MAX_PAGE:
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
    if type(page) is not int or not 0 <= page <= MAX_PAGE:
        raise SlideError("bad page in slide record")
    return doc_id, page


def record_json(data: bytes) -> str:
    """A slide record as the JSON text replay sends to the TV page: {"type": "slide", ...}."""
    try:
        doc_id, page = parse_record(data)
    except SlideError:
        return json.dumps({"type": "slide", "error": "bad slide record"})
    return json.dumps({"type": "slide", "doc_id": doc_id, "page": page})
