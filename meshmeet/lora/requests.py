"""Turn API arguments (JSON) into LoRa messages, and LoRa messages into JSON for status and browsers.

`parse_send(args)` reads the body of POST /api/lora_send::

    {"kind": "control",    "meeting": 3, "action": "vote_open", "item": 2}
    {"kind": "tally",      "meeting": 3, "item": 2, "yes": 40, "no": 3, "abstain": 1}
    {"kind": "attendance", "meeting": 3, "present": 41, "expected": 45}
    {"kind": "digest",     "seq": 1234, "digest": "0011223344556677"}
    optional: "dest": short id (default: broadcast), "ack": true/false (default true for
    control/tally/attendance), "ack_from": [short ids] (default: dest, or every other member
    when broadcast)

This module must never send anything, and never raise anything but RequestError on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MeshmeetError
from .messages import (
    ACKED_KINDS, BROADCAST, MAX_REF_BYTES, MAX_TEXT_BYTES, Alert, Attendance, Beacon, Control, ControlAction, Digest,
    Message, Slide, Tally, kind_of,
)

MAX_U32 = (1 << 32) - 1


class RequestError(MeshmeetError):
    def __init__(self, vi: str, en: str) -> None:
        super().__init__(vi, en)


@dataclass(frozen=True)
class SendRequest:
    message: Message
    dest: int
    ack: bool
    ack_from: frozenset[int] | None  # None: the default for dest


def _uint(args: dict, name: str, default: int | None = None, hi: int = MAX_U32) -> int:
    value = args.get(name, default)
    if type(value) is not int or not 0 <= value <= hi:
        raise RequestError(f"Trường '{name}' phải là số nguyên 0..{hi}", f"field '{name}' must be an integer 0..{hi}")
    return value


def parse_send(args: object) -> SendRequest:
    if not isinstance(args, dict):
        raise RequestError("Cần một đối tượng JSON", "expected a JSON object")
    kind = args.get("kind")
    message: Message
    if kind == "control":
        action_name = args.get("action")
        try:
            action = ControlAction[str(action_name).upper()]
        except KeyError:
            names = ", ".join(a.name.lower() for a in ControlAction)
            raise RequestError(f"'action' phải là một trong: {names}", f"'action' must be one of: {names}") from None
        message = Control(_uint(args, "meeting"), action, _uint(args, "item", 0))
    elif kind == "tally":
        message = Tally(*(_uint(args, f) for f in ("meeting", "item", "yes", "no", "abstain")))
    elif kind == "attendance":
        message = Attendance(*(_uint(args, f) for f in ("meeting", "present", "expected")))
    elif kind == "digest":
        try:
            digest = bytes.fromhex(str(args.get("digest", "")))
        except ValueError:
            digest = b""
        if len(digest) != 8:
            raise RequestError("'digest' phải là 8 byte dạng hex", "'digest' must be 8 bytes in hex")
        message = Digest(_uint(args, "seq", hi=(1 << 63) - 1), digest)
    else:
        raise RequestError("'kind' phải là control, tally, attendance hoặc digest",
                           "'kind' must be control, tally, attendance or digest")
    dest = _uint(args, "dest", BROADCAST, 0xFFFF)
    ack = args.get("ack", kind_of(message) in ACKED_KINDS)
    if not isinstance(ack, bool) or (ack and kind_of(message) not in ACKED_KINDS):
        raise RequestError("'ack' không hợp lệ cho loại tin này", "'ack' is not valid for this kind")
    ack_from = args.get("ack_from")
    if ack_from is not None:
        if not isinstance(ack_from, list) or not all(type(x) is int and 0 <= x < BROADCAST for x in ack_from):
            raise RequestError("'ack_from' phải là danh sách số hiệu", "'ack_from' must be a list of short ids")
        ack_from = frozenset(ack_from)
    return SendRequest(message, dest, ack, ack_from)


def parse_alert_text(args: object) -> str:
    text = args.get("text") if isinstance(args, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise RequestError("Cần nội dung cảnh báo ('text')", "the alert needs a 'text'")
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise RequestError(f"Cảnh báo dài quá {MAX_TEXT_BYTES} byte", f"the alert is longer than {MAX_TEXT_BYTES} bytes")
    return text


def parse_announcement_id(args: object) -> bytes:
    """The optional 'announcement_id' of an alert (hex, as the sync store names rows) as bytes."""
    value = args.get("announcement_id") if isinstance(args, dict) else None
    if value is None:
        return b""
    try:
        ref = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        ref = b""
    if not 0 < len(ref) <= MAX_REF_BYTES:
        raise RequestError(f"'announcement_id' phải là 1..{MAX_REF_BYTES} byte dạng hex",
                           f"'announcement_id' must be 1..{MAX_REF_BYTES} bytes in hex")
    return ref


def message_json(message: Message) -> dict:
    """A LoRa message as JSON for status and the browsers' "lora" topic."""
    kind = kind_of(message).name.lower()
    if isinstance(message, Control):
        return {"kind": kind, "meeting": message.meeting, "action": message.action.name.lower(), "item": message.item}
    if isinstance(message, Tally):
        return {"kind": kind, "meeting": message.meeting, "item": message.item, "yes": message.yes,
                "no": message.no, "abstain": message.abstain}
    if isinstance(message, Attendance):
        return {"kind": kind, "meeting": message.meeting, "present": message.present, "expected": message.expected}
    if isinstance(message, Digest):
        return {"kind": kind, "seq": message.seq, "digest": message.digest.hex()}
    if isinstance(message, Alert):
        out = {"kind": kind, "text": message.text, "issued_at": message.issued_at}
        if message.ref:
            out["announcement_id"] = message.ref.hex()
        return out
    if isinstance(message, Beacon):
        return {"kind": kind, "role": message.role, "version": message.version}
    if isinstance(message, Slide):
        return {"kind": kind, "doc": message.doc, "page": message.page, "turn": message.turn}
    return {"kind": kind}
