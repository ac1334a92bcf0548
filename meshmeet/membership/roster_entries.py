"""Signed roster entries (header, seat, claim, revocation) and their byte format.

An entry is msgpack [kind, body, signature...] where body is canonical msgpack of the entry's
fields; docs/protocol/membership.md section 1 writes the format down. This module builds entries
(make_*), parses them (decode_entry, parse_entry_list) and checks claim signatures. Deciding which
entries belong to a commune, and who its members are, is the Roster's job (roster.py).

It must never do I/O, read a clock, or hold state: every function here is pure. decode_entry
checks structure only; callers must verify signatures (Roster.add does) before trusting an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import msgpack

from ..errors import MeshmeetError
from .identity import COMMUNE_ID_BYTES, KeyPair, commune_id_of, verify

KIND_HEADER = 1
KIND_SEAT = 2
KIND_CLAIM = 3
KIND_REVOCATION = 4

ROLES = ("hq", "hall", "relay")
DEFAULT_PRIORITY = {"hq": 100, "hall": 10, "relay": 1}

SIGN_CONTEXT = b"meshmeet roster v1\x00"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_NAME_BYTES = 128  # commune and site names, UTF-8
MAX_ENTRY_BYTES = 512
MAX_ROSTER_ENTRIES = 4096
MAX_PRIORITY = 0xFFFF
MAX_UNIX_S = 2**40
SHORT_ID_MIN = 1  # 0 means "no short id"
SHORT_ID_MAX = 0xFFFE  # 0xFFFF is broadcast on the wire
DIGEST_BYTES = 32  # a roster digest (Roster.digest, gossip HAVE)


class RosterError(MeshmeetError):
    """An entry or roster message is malformed, foreign or wrongly signed."""


def _bad(vi: str, en: str) -> RosterError:
    return RosterError(vi, en)


def pack(obj: object) -> bytes:
    """Canonical msgpack (shortest ints, bin for bytes): how entries and roster messages are encoded."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack_strict(data: bytes, what_vi: str, what_en: str) -> object:
    """Unpack msgpack that must be canonical (re-packs to the same bytes); RosterError otherwise."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
        canonical = pack(obj) == data
    except Exception:  # msgpack raises many types on junk; all mean "malformed"
        canonical = False
        obj = None
    if not canonical:
        raise _bad(f"{what_vi} bị hỏng", f"{what_en} is malformed")
    return obj


def signed_message(kind: int, body: bytes) -> bytes:
    """The bytes an entry's signature covers: context, kind byte, canonical body."""
    return SIGN_CONTEXT + bytes([kind]) + body


def _is_int(x: object, lo: int, hi: int) -> bool:
    return type(x) is int and lo <= x <= hi


def is_bytes_of_length(x: object, n: int) -> bool:
    """True when x is exactly `bytes` (not a subclass) of length n."""
    return type(x) is bytes and len(x) == n


def _is_name(x: object) -> bool:
    return type(x) is str and 0 < len(x.encode()) <= MAX_NAME_BYTES


@dataclass(frozen=True)
class Header:
    """The commune's name, signed by the admin key."""

    commune_id: bytes
    commune_name: str
    issued_at: int
    signature: bytes
    raw: bytes


@dataclass(frozen=True)
class Seat:
    """A place in the commune, signed by the admin key; claimed once with its enrolment key."""

    commune_id: bytes
    short_id: int
    site: str
    role: str
    priority: int
    backup: bool
    enrolment_public_key: bytes
    expires_at: int
    issued_at: int
    signature: bytes
    raw: bytes


@dataclass(frozen=True)
class Claim:
    """A node key taking a seat; signed by the seat's enrolment key and by the node key."""

    commune_id: bytes
    short_id: int
    node_public_key: bytes
    enrolment_signature: bytes
    node_signature: bytes
    raw: bytes


@dataclass(frozen=True)
class Revocation:
    """The admin withdrawing a seat (and whoever claimed it)."""

    commune_id: bytes
    short_id: int
    issued_at: int
    signature: bytes
    raw: bytes


Entry = Union[Header, Seat, Claim, Revocation]


@dataclass(frozen=True)
class Member:
    """A seat with its winning claim: a node that belongs to the commune."""

    short_id: int
    node_id: str
    public_key: bytes
    site: str
    role: str
    priority: int
    backup: bool


# ---------------------------------------------------------------- building entries


def _wrap(kind: int, body: bytes, *sigs: bytes) -> bytes:
    return pack([kind, body, *sigs])


def make_header(admin_key: KeyPair, commune_name: str, issued_at: int) -> Header:
    """Sign a header with the admin key."""
    body = pack([commune_id_of(admin_key.public_key), commune_name, int(issued_at)])
    sig = admin_key.sign(signed_message(KIND_HEADER, body))
    return decode_entry(_wrap(KIND_HEADER, body, sig))  # type: ignore[return-value]


def make_seat(
    admin_key: KeyPair,
    *,
    short_id: int,
    site: str,
    role: str,
    enrolment_public_key: bytes,
    expires_at: int,
    issued_at: int,
    priority: int | None = None,
    backup: bool | None = None,
) -> Seat:
    """Sign a seat with the admin key (defaults: priority by role, backup only for hq)."""
    if role not in ROLES:
        raise _bad(f"Vai trò không hợp lệ: {role}", f"unknown role: {role} (use hq, hall or relay)")
    prio = DEFAULT_PRIORITY[role] if priority is None else int(priority)
    bkp = (role == "hq") if backup is None else bool(backup)
    body = pack(
        [
            commune_id_of(admin_key.public_key),
            short_id,
            site,
            role,
            prio,
            bkp,
            enrolment_public_key,
            int(expires_at),
            int(issued_at),
        ]
    )
    sig = admin_key.sign(signed_message(KIND_SEAT, body))
    return decode_entry(_wrap(KIND_SEAT, body, sig))  # type: ignore[return-value]


def make_claim(enrolment_key: KeyPair, node_key: KeyPair, commune_id: bytes, short_id: int) -> Claim:
    """Sign a claim on seat `short_id` for `node_key`, with the seat's enrolment key."""
    body = pack([commune_id, short_id, node_key.public_key])
    msg = signed_message(KIND_CLAIM, body)
    return decode_entry(_wrap(KIND_CLAIM, body, enrolment_key.sign(msg), node_key.sign(msg)))  # type: ignore[return-value]


def make_revocation(admin_key: KeyPair, short_id: int, issued_at: int) -> Revocation:
    """Sign a revocation of seat `short_id` with the admin key."""
    body = pack([commune_id_of(admin_key.public_key), short_id, int(issued_at)])
    sig = admin_key.sign(signed_message(KIND_REVOCATION, body))
    return decode_entry(_wrap(KIND_REVOCATION, body, sig))  # type: ignore[return-value]


# ---------------------------------------------------------------- parsing entries


def decode_entry(raw: bytes) -> Entry:
    """Parse one entry's bytes (structure only; signatures are checked by Roster.add)."""
    if type(raw) is not bytes or len(raw) > MAX_ENTRY_BYTES:
        raise _bad("Mục danh sách quá lớn hoặc sai kiểu", "roster entry too large or not bytes")
    outer = unpack_strict(raw, "Mục danh sách", "roster entry")
    if not isinstance(outer, list) or len(outer) < 3 or type(outer[1]) is not bytes:
        raise _bad("Mục danh sách bị hỏng", "roster entry is malformed")
    kind, body, sigs = outer[0], outer[1], outer[2:]
    want_sigs = 2 if kind == KIND_CLAIM else 1
    if len(sigs) != want_sigs or not all(is_bytes_of_length(s, SIGNATURE_BYTES) for s in sigs):
        raise _bad("Chữ ký của mục danh sách bị hỏng", "roster entry signatures are malformed")
    f = unpack_strict(body, "Nội dung mục danh sách", "roster entry body")
    if not isinstance(f, list) or not f or not is_bytes_of_length(f[0], COMMUNE_ID_BYTES):
        raise _bad("Nội dung mục danh sách bị hỏng", "roster entry body is malformed")
    ok = False
    if kind == KIND_HEADER and len(f) == 3:
        ok = _is_name(f[1]) and _is_int(f[2], 0, MAX_UNIX_S)
        if ok:
            return Header(f[0], f[1], f[2], sigs[0], raw)
    elif kind == KIND_SEAT and len(f) == 9:
        ok = (
            _is_int(f[1], SHORT_ID_MIN, SHORT_ID_MAX)
            and _is_name(f[2])
            and f[3] in ROLES
            and _is_int(f[4], 0, MAX_PRIORITY)
            and type(f[5]) is bool
            and is_bytes_of_length(f[6], PUBLIC_KEY_BYTES)
            and _is_int(f[7], 0, MAX_UNIX_S)
            and _is_int(f[8], 0, MAX_UNIX_S)
        )
        if ok:
            return Seat(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], sigs[0], raw)
    elif kind == KIND_CLAIM and len(f) == 3:
        ok = _is_int(f[1], SHORT_ID_MIN, SHORT_ID_MAX) and is_bytes_of_length(f[2], PUBLIC_KEY_BYTES)
        if ok:
            return Claim(f[0], f[1], f[2], sigs[0], sigs[1], raw)
    elif kind == KIND_REVOCATION and len(f) == 3:
        ok = _is_int(f[1], SHORT_ID_MIN, SHORT_ID_MAX) and _is_int(f[2], 0, MAX_UNIX_S)
        if ok:
            return Revocation(f[0], f[1], f[2], sigs[0], raw)
    raise _bad("Loại hoặc trường của mục danh sách không hợp lệ", "roster entry kind or fields are invalid")


def body_of(entry: Entry) -> bytes:
    """The canonical body bytes an entry's signatures cover (see signed_message)."""
    return msgpack.unpackb(entry.raw, raw=False)[1]


def kind_of(entry: Entry) -> int:
    """The KIND_* byte of an entry."""
    return {Header: KIND_HEADER, Seat: KIND_SEAT, Claim: KIND_CLAIM, Revocation: KIND_REVOCATION}[type(entry)]


def claim_signed_by(claim: Claim, enrolment_public_key: bytes) -> bool:
    """True when the claim carries valid signatures by this enrolment key and its node key."""
    msg = signed_message(KIND_CLAIM, body_of(claim))
    return verify(enrolment_public_key, msg, claim.enrolment_signature) and verify(
        claim.node_public_key, msg, claim.node_signature
    )


# ---------------------------------------------------------------- lists of entries


def parse_entry_list(data: bytes) -> list[bytes]:
    """Parse a msgpack array of bin (entries_bytes form); RosterError on junk."""
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception:
        obj = None
    if not isinstance(obj, list) or len(obj) > MAX_ROSTER_ENTRIES or not all(type(r) is bytes for r in obj):
        raise _bad("Danh sách mục bị hỏng", "roster entry list is malformed")
    return obj
