"""The commune roster: the set of valid signed entries of one commune, merged by union.

The roster says who belongs to the commune. It is a grow-only set of signed entries (a CRDT):
any two nodes that hold the same entries compute the same members, whatever order the entries
arrived in. Every rule that could differ between nodes is deterministic (the smallest signature
wins a race). The byte format is written down in docs/protocol/membership.md.

The entries themselves and their codec live in roster_entries.py, the gossip over links in
roster_gossip.py; their public names are re-exported here so `from meshmeet.membership.roster import X`
keeps working.

It must never do I/O, read a clock, or accept an entry whose signature it has not checked.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import msgpack

from .identity import commune_id_of, node_id_of, verify
from .roster_entries import (
    DEFAULT_PRIORITY,
    DIGEST_BYTES,
    KIND_CLAIM,
    KIND_HEADER,
    KIND_REVOCATION,
    KIND_SEAT,
    MAX_ENTRY_BYTES,
    MAX_NAME_BYTES,
    MAX_PRIORITY,
    MAX_ROSTER_ENTRIES,
    MAX_UNIX_S,
    PUBLIC_KEY_BYTES,
    ROLES,
    SHORT_ID_MAX,
    SHORT_ID_MIN,
    SIGN_CONTEXT,
    SIGNATURE_BYTES,
    Claim,
    Entry,
    Header,
    Member,
    Revocation,
    RosterError,
    Seat,
    body_of,
    claim_signed_by,
    decode_entry,
    is_bytes_of_length,
    kind_of,
    make_claim,
    make_header,
    make_revocation,
    make_seat,
    pack,
    parse_entry_list,
    signed_message,
    unpack_strict,
)
from .roster_gossip import (
    GOSSIP_CHUNK_BYTES,
    GOSSIP_ENTRIES,
    GOSSIP_HAVE,
    MAX_GOSSIP_BODY_BYTES,
    GossipResult,
    RosterGossip,
)

MAX_PENDING_CLAIMS = 256


class Roster:
    """The set of valid entries of one commune, and the members they define."""

    def __init__(self, admin_public_key: bytes) -> None:
        if not is_bytes_of_length(admin_public_key, PUBLIC_KEY_BYTES):
            raise RosterError("Khóa quản trị không hợp lệ", "admin public key must be 32 bytes")
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
            raise RosterError("Mục danh sách thuộc xã khác", "roster entry belongs to another commune")
        if len(self._entries) >= MAX_ROSTER_ENTRIES:
            raise RosterError("Danh sách thành viên đã đầy", "roster is full")
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
        kind = kind_of(e)
        if not verify(self.admin_public_key, signed_message(kind, body_of(e)), e.signature):
            raise RosterError("Chữ ký quản trị không hợp lệ", "bad admin signature on roster entry")
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

    def revoked_short_ids(self) -> tuple[int, ...]:
        """Every revoked seat, sorted."""
        return tuple(sorted(self._revoked))

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

    def public_key_of(self, node_id: str) -> bytes | None:
        """A member's public key by node id (who signs its beacons); None for a non-member."""
        member = self.member_by_node_id(node_id)
        return member.public_key if member is not None else None

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
            raise RosterError("Hết mã ngắn cho điểm mới", "no short id left for a new seat")
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
        return pack(sorted(self._entries))

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
            raise RosterError("Có yêu cầu nhận chỗ không khớp chỗ nào", "a claim matches no seat in the roster")

    def to_bytes(self) -> bytes:
        """Self-describing storage form: admin public key + entries."""
        return pack({"v": 1, "admin_pk": self.admin_public_key, "entries": sorted(self._entries)})

    @classmethod
    def from_bytes(cls, data: bytes) -> "Roster":
        """Inverse of to_bytes(); RosterError on any damage."""
        try:
            obj = msgpack.unpackb(data, raw=False)
        except Exception:
            obj = None
        if not isinstance(obj, dict) or obj.get("v") != 1 or not isinstance(obj.get("entries"), list):
            raise RosterError("Tệp danh sách thành viên bị hỏng", "roster data is corrupt")
        roster = cls(obj.get("admin_pk"))  # type: ignore[arg-type]
        if not all(type(r) is bytes for r in obj["entries"]):
            raise RosterError("Tệp danh sách thành viên bị hỏng", "roster data is corrupt")
        roster.add_all_strict(obj["entries"])
        return roster


__all__ = [
    "Roster",
    "MAX_PENDING_CLAIMS",
    # re-exported from roster_entries
    "DEFAULT_PRIORITY", "DIGEST_BYTES", "KIND_CLAIM", "KIND_HEADER", "KIND_REVOCATION", "KIND_SEAT",
    "MAX_ENTRY_BYTES", "MAX_NAME_BYTES", "MAX_PRIORITY", "MAX_ROSTER_ENTRIES", "MAX_UNIX_S",
    "PUBLIC_KEY_BYTES", "ROLES", "SHORT_ID_MAX", "SHORT_ID_MIN", "SIGN_CONTEXT", "SIGNATURE_BYTES",
    "Claim", "Entry", "Header", "Member", "Revocation", "RosterError", "Seat",
    "claim_signed_by", "decode_entry", "make_claim", "make_header", "make_revocation", "make_seat",
    "parse_entry_list", "signed_message", "unpack_strict",
    # re-exported from roster_gossip
    "GOSSIP_CHUNK_BYTES", "GOSSIP_ENTRIES", "GOSSIP_HAVE", "MAX_GOSSIP_BODY_BYTES", "GossipResult", "RosterGossip",
]
