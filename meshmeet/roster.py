"""The commune roster: signed entries (header, seats, claims, revocations) merged by union.

The roster says who belongs to the commune. It is a grow-only set of signed entries (a CRDT):
any two nodes that hold the same entries compute the same members, whatever order the entries
arrived in. Every rule that could differ between nodes is deterministic (the smallest signature
wins a race). The byte format is written down in docs/protocol/membership.md.

This module also holds the tiny sans-IO roster gossip carried over links (service ROSTER 0x10).

It must never do I/O, read a clock, or accept an entry whose signature it has not checked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Union

import msgpack

from .errors import MeshmeetError
from .identity import COMMUNE_ID_BYTES, KeyPair, commune_id_of, node_id_of, verify

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
MAX_PENDING_CLAIMS = 256
MAX_PRIORITY = 0xFFFF
MAX_UNIX_S = 2**40
SHORT_ID_MIN = 1  # 0 means "no short id"
SHORT_ID_MAX = 0xFFFE  # 0xFFFF is broadcast on the wire
DIGEST_BYTES = 32

GOSSIP_HAVE = 1
GOSSIP_ENTRIES = 2
GOSSIP_CHUNK_BYTES = 32 * 1024
MAX_GOSSIP_BODY_BYTES = GOSSIP_CHUNK_BYTES + 4 * MAX_ENTRY_BYTES


class RosterError(MeshmeetError):
    """An entry or roster message is malformed, foreign or wrongly signed."""


def _bad(vi: str, en: str) -> RosterError:
    return RosterError(vi, en)


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack_strict(data: bytes, what_vi: str, what_en: str) -> object:
    """Unpack msgpack that must be canonical (re-packs to the same bytes); RosterError otherwise."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
        canonical = _pack(obj) == data
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


def _is_bytes(x: object, n: int) -> bool:
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
    return _pack([kind, body, *sigs])


def make_header(admin_key: KeyPair, commune_name: str, issued_at: int) -> Header:
    """Sign a header with the admin key."""
    body = _pack([commune_id_of(admin_key.public_key), commune_name, int(issued_at)])
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
    body = _pack(
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
    body = _pack([commune_id, short_id, node_key.public_key])
    msg = signed_message(KIND_CLAIM, body)
    return decode_entry(_wrap(KIND_CLAIM, body, enrolment_key.sign(msg), node_key.sign(msg)))  # type: ignore[return-value]


def make_revocation(admin_key: KeyPair, short_id: int, issued_at: int) -> Revocation:
    """Sign a revocation of seat `short_id` with the admin key."""
    body = _pack([commune_id_of(admin_key.public_key), short_id, int(issued_at)])
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
    if len(sigs) != want_sigs or not all(_is_bytes(s, SIGNATURE_BYTES) for s in sigs):
        raise _bad("Chữ ký của mục danh sách bị hỏng", "roster entry signatures are malformed")
    f = unpack_strict(body, "Nội dung mục danh sách", "roster entry body")
    if not isinstance(f, list) or not f or not _is_bytes(f[0], COMMUNE_ID_BYTES):
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
            and _is_bytes(f[6], PUBLIC_KEY_BYTES)
            and _is_int(f[7], 0, MAX_UNIX_S)
            and _is_int(f[8], 0, MAX_UNIX_S)
        )
        if ok:
            return Seat(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], sigs[0], raw)
    elif kind == KIND_CLAIM and len(f) == 3:
        ok = _is_int(f[1], SHORT_ID_MIN, SHORT_ID_MAX) and _is_bytes(f[2], PUBLIC_KEY_BYTES)
        if ok:
            return Claim(f[0], f[1], f[2], sigs[0], sigs[1], raw)
    elif kind == KIND_REVOCATION and len(f) == 3:
        ok = _is_int(f[1], SHORT_ID_MIN, SHORT_ID_MAX) and _is_int(f[2], 0, MAX_UNIX_S)
        if ok:
            return Revocation(f[0], f[1], f[2], sigs[0], raw)
    raise _bad("Loại hoặc trường của mục danh sách không hợp lệ", "roster entry kind or fields are invalid")


def _body_of(entry: Entry) -> bytes:
    return msgpack.unpackb(entry.raw, raw=False)[1]


def _kind_of(entry: Entry) -> int:
    return {Header: KIND_HEADER, Seat: KIND_SEAT, Claim: KIND_CLAIM, Revocation: KIND_REVOCATION}[type(entry)]


def claim_signed_by(claim: Claim, enrolment_public_key: bytes) -> bool:
    """True when the claim carries valid signatures by this enrolment key and its node key."""
    msg = signed_message(KIND_CLAIM, _body_of(claim))
    return verify(enrolment_public_key, msg, claim.enrolment_signature) and verify(
        claim.node_public_key, msg, claim.node_signature
    )


# ---------------------------------------------------------------- the roster


class Roster:
    """The set of valid entries of one commune, and the members they define."""

    def __init__(self, admin_public_key: bytes) -> None:
        if not _is_bytes(admin_public_key, PUBLIC_KEY_BYTES):
            raise _bad("Khóa quản trị không hợp lệ", "admin public key must be 32 bytes")
        self.admin_public_key = admin_public_key
        self.commune_id = commune_id_of(admin_public_key)
        self._entries: dict[bytes, Entry] = {}
        self._seats: dict[int, list[Seat]] = {}
        self._claims: dict[bytes, list[Claim]] = {}  # by the enrolment key they verified against
        self._revoked: set[int] = set()
        self._pending: dict[bytes, Claim] = {}
        self._members: list[Member] | None = None  # caches, cleared whenever an entry is accepted
        self._digest: bytes | None = None

    # -- adding

    def add(self, entry: Entry | bytes) -> bool:
        """Validate and add one entry; True when it was new. Raises RosterError when invalid.

        A claim whose seat is not known yet is kept pending (returns False) and is added, and
        reported by merge(), when its seat arrives.
        """
        return bool(self.accept(entry))

    def accept(self, entry: Entry | bytes) -> list[Entry]:
        """Like add(), but returns every entry it made newly accepted (a seat frees pending claims)."""
        return self._add(entry)

    def merge(self, entries: Iterable[Entry | bytes]) -> list[Entry]:
        """Add every valid entry, silently dropping invalid ones; returns the newly accepted."""
        new: list[Entry] = []
        for e in entries:
            try:
                new.extend(self._add(e))
            except RosterError:
                continue
        return new

    def _add(self, entry: Entry | bytes) -> list[Entry]:
        new = self._add_uncached(entry)
        if new:
            self._members = self._digest = None
        return new

    def _add_uncached(self, entry: Entry | bytes) -> list[Entry]:
        e = decode_entry(entry if isinstance(entry, bytes) else getattr(entry, "raw", None))  # type: ignore[arg-type]
        if e.raw in self._entries:
            return []
        if e.commune_id != self.commune_id:
            raise _bad("Mục danh sách thuộc xã khác", "roster entry belongs to another commune")
        if len(self._entries) >= MAX_ROSTER_ENTRIES:
            raise _bad("Danh sách thành viên đã đầy", "roster is full")
        if isinstance(e, Claim):
            seat = self._seat_signing(e)
            if seat is None:
                if len(self._pending) < MAX_PENDING_CLAIMS:
                    self._pending[e.raw] = e
                return []
            self._claims.setdefault(seat.enrolment_public_key, []).append(e)
            self._entries[e.raw] = e
            self._pending.pop(e.raw, None)
            return [e]
        kind = _kind_of(e)
        if not verify(self.admin_public_key, signed_message(kind, _body_of(e)), e.signature):
            raise _bad("Chữ ký quản trị không hợp lệ", "bad admin signature on roster entry")
        self._entries[e.raw] = e
        new: list[Entry] = [e]
        if isinstance(e, Seat):
            self._seats.setdefault(e.short_id, []).append(e)
            for c in [c for c in self._pending.values() if c.short_id == e.short_id]:
                if claim_signed_by(c, e.enrolment_public_key):
                    del self._pending[c.raw]
                    self._claims.setdefault(e.enrolment_public_key, []).append(c)
                    self._entries[c.raw] = c
                    new.append(c)
        elif isinstance(e, Revocation):
            self._revoked.add(e.short_id)
        return new

    def _seat_signing(self, claim: Claim) -> Seat | None:
        for seat in self._seats.get(claim.short_id, []):
            if claim_signed_by(claim, seat.enrolment_public_key):
                return seat
        return None

    # -- queries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry: object) -> bool:
        raw = entry if isinstance(entry, bytes) else getattr(entry, "raw", None)
        return raw in self._entries

    def entries(self) -> list[Entry]:
        """All accepted entries, sorted by their bytes."""
        return [self._entries[k] for k in sorted(self._entries)]

    def pending_claims(self) -> list[Claim]:
        return list(self._pending.values())

    def header(self) -> Header | None:
        """The newest header (ties: smallest signature)."""
        hs = [e for e in self._entries.values() if isinstance(e, Header)]
        return min(hs, key=lambda h: (-h.issued_at, h.signature), default=None)

    @property
    def commune_name(self) -> str | None:
        h = self.header()
        return h.commune_name if h else None

    def is_revoked(self, short_id: int) -> bool:
        return short_id in self._revoked

    def seat(self, short_id: int) -> Seat | None:
        """The winning seat for a short id (two seats on one id: smallest signature wins)."""
        return min(self._seats.get(short_id, []), key=lambda s: s.signature, default=None)

    def claim(self, short_id: int) -> Claim | None:
        """The winning claim on the winning seat (smallest enrolment signature wins)."""
        seat = self.seat(short_id)
        if seat is None:
            return None
        cs = self._claims.get(seat.enrolment_public_key, [])
        return min(cs, key=lambda c: c.enrolment_signature, default=None)

    def members(self) -> list[Member]:
        """Every claimed, unrevoked seat, by short id."""
        return list(self._member_index()[0])

    def _member_index(self) -> tuple[list[Member], dict[int, Member], dict[bytes, Member], dict[str, Member]]:
        if self._members is None:
            members = self._compute_members()
            self._members = members
            self._by_sid = {m.short_id: m for m in members}
            self._by_pk: dict[bytes, Member] = {}
            for m in members:  # lowest short id first, so setdefault keeps it
                self._by_pk.setdefault(m.public_key, m)
            self._by_nid = {m.node_id: m for m in self._by_pk.values()}
        return self._members, self._by_sid, self._by_pk, self._by_nid

    def _compute_members(self) -> list[Member]:
        out = []
        for sid in sorted(self._seats):
            if sid in self._revoked:
                continue
            seat, claim = self.seat(sid), self.claim(sid)
            if seat is None or claim is None:
                continue
            pk = claim.node_public_key
            out.append(Member(sid, node_id_of(pk), pk, seat.site, seat.role, seat.priority, seat.backup))
        return out

    def member_by_short_id(self, short_id: int) -> Member | None:
        return self._member_index()[1].get(short_id)

    def member_by_public_key(self, public_key: bytes) -> Member | None:
        """The member with this node key (lowest short id if one key holds several seats)."""
        return self._member_index()[2].get(public_key)

    def member_by_node_id(self, node_id: str) -> Member | None:
        return self._member_index()[3].get(node_id)

    def is_member(self, public_key: bytes) -> bool:
        return self.member_by_public_key(public_key) is not None

    def open_seats(self, now: float | None = None) -> list[Seat]:
        """Winning seats with no claim, not revoked, and (given `now`) not expired."""
        out = []
        for sid in sorted(self._seats):
            seat = self.seat(sid)
            if seat is None or sid in self._revoked or self.claim(sid) is not None:
                continue
            if now is not None and seat.expires_at <= now:
                continue
            out.append(seat)
        return out

    def next_short_id(self) -> int:
        """The smallest short id no seat has ever used."""
        used = set(self._seats)
        sid = SHORT_ID_MIN
        while sid in used:
            sid += 1
        if sid > SHORT_ID_MAX:
            raise _bad("Hết mã ngắn cho điểm mới", "no short id left for a new seat")
        return sid

    def digest(self) -> bytes:
        """BLAKE2b-256 over the sorted accepted entries: equal digests mean equal rosters."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=DIGEST_BYTES, person=b"meshmeet-roster")
            for raw in sorted(self._entries):
                h.update(len(raw).to_bytes(2, "big") + raw)
            self._digest = h.digest()
        return self._digest

    # -- storage and replication

    def entries_bytes(self) -> bytes:
        """The accepted entries as one msgpack array of bin (sorted)."""
        return _pack(sorted(self._entries))

    @classmethod
    def from_entries_bytes(cls, admin_public_key: bytes, data: bytes) -> "Roster":
        """Rebuild a roster from entries_bytes(); RosterError if any entry is invalid."""
        roster = cls(admin_public_key)
        roster.add_all_strict(parse_entry_list(data))
        return roster

    def add_all_strict(self, raws: list[bytes]) -> None:
        """Add entries in an order that puts seats first; RosterError if any is invalid or unplaced."""
        decoded = [decode_entry(r) for r in raws]
        decoded.sort(key=lambda e: isinstance(e, Claim))
        for e in decoded:
            self.add(e)
        if self._pending:
            raise _bad("Có yêu cầu nhận chỗ không khớp chỗ nào", "a claim matches no seat in the roster")

    def to_bytes(self) -> bytes:
        """Self-describing storage form: admin public key + entries."""
        return _pack({"v": 1, "admin_pk": self.admin_public_key, "entries": sorted(self._entries)})

    @classmethod
    def from_bytes(cls, data: bytes) -> "Roster":
        """Inverse of to_bytes(); RosterError on any damage."""
        try:
            obj = msgpack.unpackb(data, raw=False)
        except Exception:
            obj = None
        if not isinstance(obj, dict) or obj.get("v") != 1 or not isinstance(obj.get("entries"), list):
            raise _bad("Tệp danh sách thành viên bị hỏng", "roster data is corrupt")
        roster = cls(obj.get("admin_pk"))  # type: ignore[arg-type]
        if not all(type(r) is bytes for r in obj["entries"]):
            raise _bad("Tệp danh sách thành viên bị hỏng", "roster data is corrupt")
        roster.add_all_strict(obj["entries"])
        return roster


def parse_entry_list(data: bytes) -> list[bytes]:
    """Parse a msgpack array of bin (entries_bytes form); RosterError on junk."""
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception:
        obj = None
    if not isinstance(obj, list) or len(obj) > MAX_ROSTER_ENTRIES or not all(type(r) is bytes for r in obj):
        raise _bad("Danh sách mục bị hỏng", "roster entry list is malformed")
    return obj


# ---------------------------------------------------------------- gossip (service 0x10)


@dataclass(frozen=True)
class GossipResult:
    """What one received gossip message did: bodies to send back, entries newly accepted."""

    replies: tuple[bytes, ...]
    new_entries: tuple[Entry, ...]


class RosterGossip:
    """Sans-IO roster replication over one link (bodies after the ROSTER service byte).

    On link up each side sends HAVE(digest). A side receiving a HAVE with a different digest
    sends all its entries in chunks (ENTRIES). ENTRIES never trigger a reply, so there is no
    ping-pong. Pending claims travel too, since the peer may hold their seat. The node sends
    every newly accepted entry (from a merge or a join) to all its links with announce();
    duplicates are cheap and ignored.
    """

    def __init__(self, roster: Roster) -> None:
        self.roster = roster

    def link_up(self) -> bytes:
        return _pack([GOSSIP_HAVE, self.roster.digest()])

    def announce(self, entries: Iterable[Entry]) -> list[bytes]:
        """ENTRIES bodies carrying `entries` (chunked to GOSSIP_CHUNK_BYTES)."""
        bodies, chunk, size = [], [], 0
        for e in entries:
            if chunk and size + len(e.raw) > GOSSIP_CHUNK_BYTES:
                bodies.append(_pack([GOSSIP_ENTRIES, chunk]))
                chunk, size = [], 0
            chunk.append(e.raw)
            size += len(e.raw)
        if chunk:
            bodies.append(_pack([GOSSIP_ENTRIES, chunk]))
        return bodies

    def receive(self, body: bytes) -> GossipResult:
        """Handle one body; RosterError on a malformed message (the link may then be closed)."""
        if type(body) is not bytes or len(body) > MAX_GOSSIP_BODY_BYTES:
            raise _bad("Tin danh sách quá lớn", "roster gossip message too large")
        try:
            msg = msgpack.unpackb(body, raw=False)
        except Exception:
            msg = None
        if isinstance(msg, list) and len(msg) == 2 and msg[0] == GOSSIP_HAVE and _is_bytes(msg[1], DIGEST_BYTES):
            if msg[1] == self.roster.digest():
                return GossipResult((), ())
            everything = [*self.roster.entries(), *self.roster.pending_claims()]  # the peer may hold their seat
            return GossipResult(tuple(self.announce(everything)), ())
        if (
            isinstance(msg, list)
            and len(msg) == 2
            and msg[0] == GOSSIP_ENTRIES
            and isinstance(msg[1], list)
            and all(type(r) is bytes for r in msg[1])
        ):
            return GossipResult((), tuple(self.roster.merge(msg[1])))
        raise _bad("Tin danh sách bị hỏng", "roster gossip message is malformed")
