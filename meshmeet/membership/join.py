"""The join exchange, sans-IO: a new hall claims its seat through any reachable member.

Runs on a plain TCP connection to a member's mesh port, before and instead of a link handshake;
its first byte 0x4A ('J') tells the listener apart from a link handshake (0x01). One request, one
response, each framed as b"J" + u32 BE length + msgpack. The hall sends the admin-signed seat from
its invite and its claim; the member checks them against its roster, adds the claim, and answers
with the whole roster, signed over the hall's nonce by the member's node key. The hall trusts
nothing it has not verified against the admin key from its invite. Byte format and error codes:
docs/protocol/membership.md.

JoinServer and JoinClient take bytes and `now` and return bytes and outcomes. This module must
never touch sockets, files or clocks, and hostile bytes must only ever produce a refusal outcome.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

import msgpack

from .identity import KeyPair, verify
from .invite import Invite
from .roster import (
    MAX_ENTRY_BYTES,
    MAX_ROSTER_ENTRIES,
    Claim,
    Entry,
    Member,
    Roster,
    RosterError,
    Seat,
    claim_signed_by,
    decode_entry,
    make_claim,
)

JOIN_MAGIC = b"J"  # 0x4A; a link handshake starts with 0x01
JOIN_VERSION = 1
JOIN_TIMEOUT_S = 30.0
NONCE_BYTES = 16
HEADER_BYTES = 5  # magic + u32 length
MAX_REQUEST_BYTES = 4 * MAX_ENTRY_BYTES
MAX_RESPONSE_BYTES = MAX_ROSTER_ENTRIES * (MAX_ENTRY_BYTES + 3) + 4096
MAX_REASON_CHARS = 300
MSG_REQUEST = 1
MSG_OK = 2
MSG_ERROR = 3
OK_CONTEXT = b"meshmeet join ok v1\x00"


class JoinCode(IntEnum):
    """Why a join was refused (the number travels on the wire)."""

    MALFORMED = 1
    FOREIGN_COMMUNE = 2
    UNKNOWN_SEAT = 3
    EXPIRED = 4
    ALREADY_CLAIMED = 5
    BAD_CLAIM = 6
    REVOKED = 7
    TIMEOUT = 8  # local only
    BAD_RESPONSE = 9  # local only: the member's answer did not verify
    CLOSED = 10  # local only: the connection ended early


REASONS: dict[JoinCode, tuple[str, str]] = {
    JoinCode.MALFORMED: ("Yêu cầu gia nhập bị hỏng", "join request is malformed"),
    JoinCode.FOREIGN_COMMUNE: ("Mã mời thuộc xã khác", "the invite belongs to another commune"),
    JoinCode.UNKNOWN_SEAT: (
        "Chỗ trong mã mời không có trong danh sách của xã",
        "the invite's seat is not on the commune roster",
    ),
    JoinCode.EXPIRED: ("Mã mời đã hết hạn", "the invite has expired"),
    JoinCode.ALREADY_CLAIMED: (
        "Mã mời đã được dùng cho một máy khác",
        "the invite was already used by another node",
    ),
    JoinCode.BAD_CLAIM: ("Chữ ký yêu cầu gia nhập không hợp lệ", "the join claim signature is invalid"),
    JoinCode.REVOKED: ("Chỗ này đã bị thu hồi", "this seat has been revoked"),
    JoinCode.TIMEOUT: ("Quá thời gian chờ gia nhập", "timed out waiting to join"),
    JoinCode.BAD_RESPONSE: (
        "Trả lời của máy thành viên không xác thực được",
        "the member's answer did not verify",
    ),
    JoinCode.CLOSED: ("Máy thành viên đóng kết nối giữa chừng", "the member closed the connection early"),
}


@dataclass(frozen=True)
class JoinAccepted:
    """Server outcome: the claim is on the roster (new=False when it was already there)."""

    short_id: int
    node_public_key: bytes
    new: bool
    new_entries: tuple[Entry, ...]


@dataclass(frozen=True)
class JoinRefused:
    """Outcome on either side: the join failed, with a bilingual reason (peer text for server codes)."""

    code: JoinCode
    vi: str
    en: str


@dataclass(frozen=True)
class Joined:
    """Client outcome: a verified roster that holds our claim, and the member who answered."""

    roster: Roster
    member: Member
    responder: Member


def is_join_start(first_bytes: bytes) -> bool:
    """True when a fresh connection's first bytes are a join request rather than a link handshake."""
    return first_bytes[:1] == JOIN_MAGIC


def _frame(body: object) -> bytes:
    data = msgpack.packb(body, use_bin_type=True)
    return JOIN_MAGIC + len(data).to_bytes(4, "big") + data


def _refused(code: JoinCode) -> JoinRefused:
    return JoinRefused(code, *REASONS[code])


def _ok_message(nonce: bytes, claim_raw: bytes, roster_digest: bytes) -> bytes:
    return OK_CONTEXT + nonce + hashlib.blake2b(claim_raw, digest_size=32).digest() + roster_digest


@dataclass(frozen=True)
class _Body:
    """A decoded message body (wrapped, since msgpack nil decodes to None)."""

    value: object


class _Reader:
    """Collects one framed message; returns its decoded _Body, a JoinCode on damage, or None."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buf = bytearray()

    def feed(self, data: bytes) -> _Body | JoinCode | None:
        self.buf += data
        if len(self.buf) >= 1 and self.buf[:1] != JOIN_MAGIC:
            return JoinCode.MALFORMED
        if len(self.buf) < HEADER_BYTES:
            return None
        size = int.from_bytes(self.buf[1:HEADER_BYTES], "big")
        if size > self.max_bytes:
            return JoinCode.MALFORMED
        if len(self.buf) < HEADER_BYTES + size:
            return None
        if len(self.buf) > HEADER_BYTES + size:
            return JoinCode.MALFORMED  # one message each way, nothing after it
        try:
            return _Body(msgpack.unpackb(bytes(self.buf[HEADER_BYTES:]), raw=False))
        except Exception:  # msgpack raises many types on junk
            return JoinCode.MALFORMED


class JoinServer:
    """The member's side of one join connection. Feed bytes; send data_to_send(); stop at outcome."""

    def __init__(self, roster: Roster, node_key: KeyPair, now: float, unix_time: float) -> None:
        """`now` is the driver's monotonic clock (deadlines); `unix_time` the wall clock (seat expiry)."""
        self.roster = roster
        self.unix_time = unix_time
        self.node_key = node_key
        self.deadline = now + JOIN_TIMEOUT_S
        self.outcome: JoinAccepted | JoinRefused | None = None
        self._reader = _Reader(MAX_REQUEST_BYTES)
        self._out = bytearray()
        self._nonce = b""

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_data(self, data: bytes, now: float) -> JoinAccepted | JoinRefused | None:
        """Bytes from the hall (b"" = end of stream). Returns the outcome once there is one."""
        if self.outcome is not None:
            return self.outcome
        if now >= self.deadline:
            return self.timeout(now)
        if not data:
            return self._finish(_refused(JoinCode.CLOSED), reply=False)
        msg = self._reader.feed(data)
        if msg is None:
            return None
        if isinstance(msg, JoinCode):
            return self._finish(_refused(msg))
        return self._finish(self._handle(msg.value))

    def timeout(self, now: float) -> JoinRefused:
        """The driver calls this at `deadline`."""
        if self.outcome is None:
            self._finish(_refused(JoinCode.TIMEOUT), reply=False)
        return self.outcome  # type: ignore[return-value]

    def _finish(self, outcome: JoinAccepted | JoinRefused, reply: bool = True) -> JoinAccepted | JoinRefused:
        self.outcome = outcome
        if reply and isinstance(outcome, JoinRefused):
            self._out += _frame([MSG_ERROR, self._nonce, int(outcome.code), outcome.vi, outcome.en])
        return outcome

    def _handle(self, msg: object) -> JoinAccepted | JoinRefused:
        if not (
            isinstance(msg, list)
            and len(msg) == 5
            and msg[0] == MSG_REQUEST
            and type(msg[4]) is bytes
            and len(msg[4]) == NONCE_BYTES
        ):
            return _refused(JoinCode.MALFORMED)
        self._nonce = msg[4]
        if msg[1] != JOIN_VERSION or type(msg[2]) is not bytes or type(msg[3]) is not bytes:
            return _refused(JoinCode.MALFORMED)
        try:
            seat, claim = decode_entry(msg[2]), decode_entry(msg[3])
        except RosterError:
            return _refused(JoinCode.MALFORMED)
        if not isinstance(seat, Seat) or not isinstance(claim, Claim) or seat.short_id != claim.short_id:
            return _refused(JoinCode.MALFORMED)
        r = self.roster
        if seat.commune_id != r.commune_id or claim.commune_id != r.commune_id:
            return _refused(JoinCode.FOREIGN_COMMUNE)
        new_entries: list[Entry] = []
        try:
            new_entries += r.accept(seat)
        except RosterError:
            return _refused(JoinCode.UNKNOWN_SEAT)  # not signed by this commune's admin
        if r.is_revoked(seat.short_id):
            return _refused(JoinCode.REVOKED)
        if r.seat(seat.short_id) != seat:
            return _refused(JoinCode.UNKNOWN_SEAT)  # another seat with this short id wins
        if not claim_signed_by(claim, seat.enrolment_public_key):
            return _refused(JoinCode.BAD_CLAIM)
        existing = r.claim(seat.short_id)
        if existing is not None and existing.node_public_key != claim.node_public_key:
            return _refused(JoinCode.ALREADY_CLAIMED)
        if existing is None:
            if seat.expires_at <= self.unix_time:
                return _refused(JoinCode.EXPIRED)
            new_entries += r.accept(claim)
        winner = r.claim(seat.short_id)
        if winner is None or winner.node_public_key != claim.node_public_key:
            return _refused(JoinCode.ALREADY_CLAIMED)
        entries = r.entries()
        sig = self.node_key.sign(_ok_message(self._nonce, claim.raw, r.digest()))
        self._out += _frame([MSG_OK, self._nonce, self.node_key.public_key, [e.raw for e in entries], sig])
        return JoinAccepted(seat.short_id, claim.node_public_key, existing is None, tuple(new_entries))


class JoinClient:
    """The new hall's side: send data_to_send() first, then feed the member's bytes."""

    def __init__(self, invite: Invite, node_key: KeyPair, nonce: bytes, now: float) -> None:
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
        self.invite = invite
        self.node_key = node_key
        self.nonce = nonce
        self.deadline = now + JOIN_TIMEOUT_S
        self.outcome: Joined | JoinRefused | None = None
        self.claim = make_claim(invite.enrolment_key(), node_key, invite.commune_id, invite.short_id)
        self._out = bytearray(_frame([MSG_REQUEST, JOIN_VERSION, invite.seat.raw, self.claim.raw, nonce]))
        self._reader = _Reader(MAX_RESPONSE_BYTES)

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def timeout(self, now: float) -> JoinRefused:
        if self.outcome is None:
            self.outcome = _refused(JoinCode.TIMEOUT)
        return self.outcome  # type: ignore[return-value]

    def receive_data(self, data: bytes, now: float) -> Joined | JoinRefused | None:
        """Bytes from the member (b"" = end of stream). Returns the outcome once there is one."""
        if self.outcome is not None:
            return self.outcome
        if now >= self.deadline:
            return self.timeout(now)
        if not data:
            self.outcome = _refused(JoinCode.CLOSED)
            return self.outcome
        msg = self._reader.feed(data)
        if msg is None:
            return None
        self.outcome = _refused(JoinCode.BAD_RESPONSE) if isinstance(msg, JoinCode) else self._handle(msg.value)
        return self.outcome

    def _handle(self, msg: object) -> Joined | JoinRefused:
        if not isinstance(msg, list) or len(msg) < 2 or msg[1] != self.nonce:
            return _refused(JoinCode.BAD_RESPONSE)
        if msg[0] == MSG_ERROR and len(msg) == 5 and type(msg[2]) is int:
            try:
                code = JoinCode(msg[2])
            except ValueError:
                vi, en = str(msg[3])[:MAX_REASON_CHARS], str(msg[4])[:MAX_REASON_CHARS]
                return JoinRefused(JoinCode.BAD_RESPONSE, vi, en)
            return _refused(code)  # our own words for a known code, never the peer's
        if not (
            msg[0] == MSG_OK
            and len(msg) == 5
            and type(msg[2]) is bytes
            and isinstance(msg[3], list)
            and all(type(r) is bytes for r in msg[3])
            and type(msg[4]) is bytes
        ):
            return _refused(JoinCode.BAD_RESPONSE)
        roster = Roster(self.invite.admin_public_key)
        try:
            roster.add_all_strict(msg[3])
        except RosterError:
            return _refused(JoinCode.BAD_RESPONSE)
        me = roster.member_by_short_id(self.invite.short_id)
        responder = roster.member_by_public_key(msg[2])
        if me is None or me.public_key != self.node_key.public_key or responder is None:
            return _refused(JoinCode.BAD_RESPONSE)
        if not verify(msg[2], _ok_message(self.nonce, self.claim.raw, roster.digest()), msg[4]):
            return _refused(JoinCode.BAD_RESPONSE)
        return Joined(roster, me, responder)
