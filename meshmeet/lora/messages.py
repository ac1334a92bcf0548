"""LoRa control messages: what they mean, how they pack, and which are signed.

A message travels as one plaintext (split into frames by `fragment.py`)::

    msgpack([dest, ref, [fields...]]) [|| Ed25519 signature (64 B) for signed kinds]

`dest` is a roster short id or BROADCAST; `ref` is None on a first transmission and the original
message id on a retry (so retries dedupe at the application and are acked again). Alerts and
tallies (results) carry an Ed25519 signature by the source node's identity key over
SIGN_LABEL || source || kind || msg_id || dest || fields. This module must never accept a
message that fails to parse into exactly these shapes, and never raise anything but MessageError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Union

import msgpack

from ..errors import MeshmeetError

BROADCAST = 0xFFFF
SIGNATURE_BYTES = 64
SIGN_LABEL = b"meshmeet-lora-msg-v1"
MAX_TEXT_BYTES = 600
MAX_REF_BYTES = 16  # an alert's announcement id (sync ids are 8 B)


class MessageError(MeshmeetError):
    """A decrypted LoRa message did not parse, or its signature or authority failed."""

    def __init__(self, en: str) -> None:
        super().__init__(f"Tin LoRa không hợp lệ: {en}", f"invalid LoRa message: {en}")


class Kind(IntEnum):
    """Frame kinds (4 bits on the air)."""

    ALERT = 1
    ACK = 2
    CONTROL = 3
    TALLY = 4
    ATTENDANCE = 5
    BEACON = 6
    DIGEST = 7
    SLIDE = 8


class Priority(IntEnum):
    """Transmit order when airtime is scarce: lower goes first."""

    ALERT = 0
    CONTROL = 1
    TALLY = 2
    BEACON = 3


PRIORITY_OF: dict[Kind, Priority] = {
    Kind.ALERT: Priority.ALERT,
    Kind.ACK: Priority.CONTROL,
    Kind.CONTROL: Priority.CONTROL,
    Kind.TALLY: Priority.TALLY,
    Kind.ATTENDANCE: Priority.TALLY,
    Kind.BEACON: Priority.BEACON,
    Kind.DIGEST: Priority.BEACON,
    Kind.SLIDE: Priority.CONTROL,
}
SIGNED_KINDS = frozenset({Kind.ALERT, Kind.TALLY})
ACKED_KINDS = frozenset({Kind.ALERT, Kind.CONTROL, Kind.TALLY, Kind.ATTENDANCE, Kind.SLIDE})
MAX_SLIDE_PAGE = 0xFFFF


class ControlAction(IntEnum):
    STARTED = 1
    AGENDA_ITEM = 2
    VOTE_OPEN = 3
    VOTE_CLOSED = 4
    ENDED = 5


@dataclass(frozen=True)
class Alert:
    """An urgent announcement (signed by an authority, e.g. HQ)."""

    text: str
    issued_at: int  # unix seconds, from the caller's clock
    ref: bytes = b""  # the sync announcement id this alert mirrors (8 B), or b"" for none


@dataclass(frozen=True)
class Ack:
    """`of_source` received message `of_id`."""

    of_source: int
    of_id: int


@dataclass(frozen=True)
class Control:
    """Meeting control: started, agenda item n, vote open/closed, ended."""

    meeting: int
    action: ControlAction
    item: int = 0


@dataclass(frozen=True)
class Tally:
    """A hall's vote result for one agenda item (signed: it is a result)."""

    meeting: int
    item: int
    yes: int
    no: int
    abstain: int


@dataclass(frozen=True)
class Attendance:
    meeting: int
    present: int
    expected: int


@dataclass(frozen=True)
class Beacon:
    """Neighbour beacon; `role` 0 hq, 1 hall, 2 relay."""

    role: int
    version: int = 1


@dataclass(frozen=True)
class Digest:
    """A tiny sync digest: highest change seq and an 8 B hash of the version vector."""

    seq: int
    digest: bytes


@dataclass(frozen=True)
class Slide:
    """The chair turned to `page` (0: the show ended) of the document whose id starts with `doc`
    (its first 32 bits, statewatch.short_ref); `turn` counts HQ's page turns, so a late retry of an
    older turn is not shown over a newer one."""

    doc: int
    page: int
    turn: int


Message = Union[Alert, Ack, Control, Tally, Attendance, Beacon, Digest, Slide]

KIND_OF: dict[type, Kind] = {
    Alert: Kind.ALERT, Ack: Kind.ACK, Control: Kind.CONTROL, Tally: Kind.TALLY,
    Attendance: Kind.ATTENDANCE, Beacon: Kind.BEACON, Digest: Kind.DIGEST, Slide: Kind.SLIDE,
}


def kind_of(message: Message) -> Kind:
    return KIND_OF[type(message)]


def _fields(m: Message) -> list:
    if isinstance(m, Alert):
        return [m.issued_at, m.text, m.ref] if m.ref else [m.issued_at, m.text]
    if isinstance(m, Ack):
        return [m.of_source, m.of_id]
    if isinstance(m, Control):
        return [m.meeting, int(m.action), m.item]
    if isinstance(m, Tally):
        return [m.meeting, m.item, m.yes, m.no, m.abstain]
    if isinstance(m, Attendance):
        return [m.meeting, m.present, m.expected]
    if isinstance(m, Beacon):
        return [m.role, m.version]
    if isinstance(m, Digest):
        return [m.seq, m.digest]
    if isinstance(m, Slide):
        return [m.doc, m.page, m.turn]
    raise TypeError(f"not a LoRa message: {m!r}")


def _uint(v: object, bits: int = 32) -> int:
    if type(v) is not int or not 0 <= v < (1 << bits):
        raise MessageError("bad integer field")
    return v


def _from_fields(kind: Kind, f: list) -> Message:
    if kind is Kind.ALERT and len(f) == 3:  # with the announcement id it mirrors
        if not isinstance(f[2], bytes) or not 0 < len(f[2]) <= MAX_REF_BYTES:
            raise MessageError("bad alert reference")
        base = _from_fields(kind, f[:2])
        assert isinstance(base, Alert)
        return Alert(base.text, base.issued_at, f[2])
    want = {Kind.ALERT: 2, Kind.ACK: 2, Kind.CONTROL: 3, Kind.TALLY: 5,
            Kind.ATTENDANCE: 3, Kind.BEACON: 2, Kind.DIGEST: 2, Kind.SLIDE: 3}[kind]
    if len(f) != want:
        raise MessageError("wrong field count")
    if kind is Kind.ALERT:
        if not isinstance(f[1], str) or len(f[1].encode()) > MAX_TEXT_BYTES:
            raise MessageError("bad alert text")
        return Alert(text=f[1], issued_at=_uint(f[0], 63))
    if kind is Kind.ACK:
        return Ack(_uint(f[0], 16), _uint(f[1], 24))
    if kind is Kind.CONTROL:
        try:
            action = ControlAction(_uint(f[1], 8))
        except ValueError:
            raise MessageError("unknown control action") from None
        return Control(_uint(f[0]), action, _uint(f[2]))
    if kind is Kind.TALLY:
        return Tally(*(_uint(x) for x in f))
    if kind is Kind.ATTENDANCE:
        return Attendance(*(_uint(x) for x in f))
    if kind is Kind.BEACON:
        return Beacon(_uint(f[0], 8), _uint(f[1], 8))
    if kind is Kind.SLIDE:
        return Slide(_uint(f[0]), _uint(f[1], 16), _uint(f[2]))
    if not isinstance(f[1], bytes) or len(f[1]) != 8:
        raise MessageError("bad digest")
    return Digest(_uint(f[0], 63), f[1])


def signed_bytes(source: int, kind: Kind, msg_id: int, dest: int, fields_packed: bytes) -> bytes:
    """What the Ed25519 signature covers (independent of retry counters)."""
    return SIGN_LABEL + struct.pack(">HBIH", source, int(kind), msg_id, dest) + fields_packed


@dataclass(frozen=True)
class Envelope:
    """A decoded message with its addressing."""

    dest: int
    ref: int | None
    message: Message


def encode_message(
    message: Message, *, source: int, msg_id: int, dest: int, ref: int | None,
    sign: Callable[[bytes], bytes] | None,
) -> bytes:
    """Pack a message (and sign it if its kind requires). `msg_id` is the original message id."""
    kind = kind_of(message)
    fields_packed = msgpack.packb(_fields(message), use_bin_type=True)
    body = msgpack.packb([dest, ref, _fields(message)], use_bin_type=True)
    if kind in SIGNED_KINDS:
        if sign is None:
            raise ValueError(f"{kind.name} must be signed")
        body += sign(signed_bytes(source, kind, msg_id, dest, fields_packed))
    return body


def decode_message(
    kind_value: int, plaintext: bytes, *, source: int, first_counter: int,
    public_key_of: Callable[[int], bytes | None], verify: Callable[[bytes, bytes, bytes], bool],
) -> Envelope:
    """Parse and (for signed kinds) verify a reassembled plaintext."""
    try:
        kind = Kind(kind_value)
    except ValueError:
        raise MessageError("unknown kind") from None
    sig = b""
    if kind in SIGNED_KINDS:
        if len(plaintext) < SIGNATURE_BYTES:
            raise MessageError("missing signature")
        plaintext, sig = plaintext[:-SIGNATURE_BYTES], plaintext[-SIGNATURE_BYTES:]
    try:
        obj = msgpack.unpackb(plaintext, raw=False, strict_map_key=True)
    except Exception:  # msgpack raises several types on junk; all mean "not a message"
        raise MessageError("not msgpack") from None
    if not isinstance(obj, list) or len(obj) != 3 or not isinstance(obj[2], list):
        raise MessageError("bad envelope")
    dest = _uint(obj[0], 16)
    ref = None if obj[1] is None else _uint(obj[1], 24)
    message = _from_fields(kind, obj[2])
    if kind in SIGNED_KINDS:
        key = public_key_of(source)
        msg_id = first_counter if ref is None else ref
        fields_packed = msgpack.packb(obj[2], use_bin_type=True)
        if key is None or not verify(key, signed_bytes(source, kind, msg_id, dest, fields_packed), sig):
            raise MessageError("bad signature")
    return Envelope(dest, ref, message)
