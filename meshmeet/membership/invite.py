"""Invite codes: one URL-safe line (and a terminal QR) that lets a new hall take one seat.

An invite carries the commune admin's public key, the admin-signed seat (rebuilt from its
fields, so it costs only its signature), the seat's single-use enrolment seed, and a few member
addresses. It is "MM1-" + base32 (no padding) of msgpack + a 4-byte BLAKE2b checksum, so a
mistyped code says "damaged" instead of failing oddly. Byte format: docs/protocol/membership.md.

This module must never do network I/O, read a clock, or carry any node's private key: the
enrolment seed is the only secret, and it is worth one seat, once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass

import msgpack
import segno

from ..errors import MeshmeetError
from .identity import SEED_BYTES, KeyPair, commune_id_of, verify
from .roster_entries import (
    KIND_SEAT,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    RosterError,
    Seat,
    signed_message,
    decode_entry,
)

INVITE_PREFIX = "MM1-"
INVITE_VERSION = 1
CHECKSUM_BYTES = 4
MAX_ADDRESSES = 8
MAX_ADDRESS_CHARS = 255
MAX_INVITE_CODE_CHARS = 4096


class InviteError(MeshmeetError):
    """The invite code is not a meshmeet invite, is damaged, or does not verify."""


DAMAGED = ("Mã mời bị hỏng (gõ sai?)", "invite code is damaged (mistyped?)")


@dataclass(frozen=True)
class Invite:
    """A decoded invite: everything a new node needs to claim its seat."""

    admin_public_key: bytes
    seat: Seat
    enrolment_seed: bytes
    addresses: tuple[str, ...]

    @property
    def commune_id(self) -> bytes:
        return commune_id_of(self.admin_public_key)

    @property
    def short_id(self) -> int:
        return self.seat.short_id

    @property
    def expires_at(self) -> int:
        return self.seat.expires_at

    def enrolment_key(self) -> KeyPair:
        return KeyPair.from_seed(self.enrolment_seed)


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=CHECKSUM_BYTES, person=b"meshmeet-invite").digest()


def parse_address(address: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port"; InviteError if it is not one."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or len(address) > MAX_ADDRESS_CHARS:
        raise InviteError(f"Địa chỉ không hợp lệ: {address!r}", f"invalid address {address!r} (want host:port)")
    return host, int(port)


def make_invite(admin_public_key: bytes, seat: Seat, enrolment_key: KeyPair, addresses: list[str]) -> Invite:
    """An invite for `seat`; checks that the pieces belong together."""
    for a in addresses:
        parse_address(a)
    if seat.enrolment_public_key != enrolment_key.public_key:
        raise InviteError("Khóa ghi danh không khớp chỗ", "enrolment key does not match the seat")
    if not 0 < len(addresses) <= MAX_ADDRESSES:
        raise InviteError(
            f"Cần từ 1 đến {MAX_ADDRESSES} địa chỉ thành viên",
            f"an invite needs 1 to {MAX_ADDRESSES} member addresses",
        )
    return Invite(admin_public_key, seat, bytes(enrolment_key.signing_key), tuple(addresses))


def encode_invite(invite: Invite) -> str:
    """The one-line code: MM1-<BASE32(msgpack payload + checksum)>."""
    s = invite.seat
    payload = msgpack.packb(
        [
            INVITE_VERSION,
            invite.admin_public_key,
            s.short_id,
            s.site,
            s.role,
            s.priority,
            s.backup,
            s.expires_at,
            s.issued_at,
            s.signature,
            invite.enrolment_seed,
            list(invite.addresses),
        ],
        use_bin_type=True,
    )
    text = base64.b32encode(payload + _checksum(payload)).decode().rstrip("=")
    return INVITE_PREFIX + text


def decode_invite(code: str) -> Invite:
    """Parse and verify a code; InviteError (bilingual) for anything wrong with it."""
    if not isinstance(code, str) or len(code) > MAX_INVITE_CODE_CHARS:
        raise InviteError(*DAMAGED)
    text = "".join(code.split()).upper()
    if not text.startswith(INVITE_PREFIX):
        raise InviteError("Đây không phải mã mời meshmeet", "this is not a meshmeet invite code")
    text = text[len(INVITE_PREFIX) :]
    try:
        blob = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise InviteError(*DAMAGED) from None
    if base64.b32encode(blob).decode().rstrip("=") != text:  # e.g. a typo in the last char's spare bits
        raise InviteError(*DAMAGED)
    payload, check = blob[:-CHECKSUM_BYTES], blob[-CHECKSUM_BYTES:]
    if len(blob) <= CHECKSUM_BYTES or _checksum(payload) != check:
        raise InviteError(*DAMAGED)
    try:
        f = msgpack.unpackb(payload, raw=False)
    except Exception:  # checksum passed, so this is a code from a foreign or future tool
        f = None
    if isinstance(f, list) and f and f[0] != INVITE_VERSION:
        raise InviteError("Mã mời của phiên bản meshmeet khác", "invite code is from another meshmeet version")
    if not (
        isinstance(f, list)
        and len(f) == 12
        and type(f[1]) is bytes
        and len(f[1]) == PUBLIC_KEY_BYTES
        and type(f[9]) is bytes
        and len(f[9]) == SIGNATURE_BYTES
        and type(f[10]) is bytes
        and len(f[10]) == SEED_BYTES
        and isinstance(f[11], list)
        and 0 < len(f[11]) <= MAX_ADDRESSES
        and all(type(a) is str for a in f[11])
    ):
        raise InviteError("Mã mời không đúng định dạng", "invite code has the wrong layout")
    admin_pk, seed, addresses = f[1], f[10], tuple(f[11])
    enrol = KeyPair.from_seed(seed)
    body = msgpack.packb(
        [commune_id_of(admin_pk), f[2], f[3], f[4], f[5], f[6], enrol.public_key, f[7], f[8]],
        use_bin_type=True,
    )
    try:
        seat = decode_entry(msgpack.packb([KIND_SEAT, body, f[9]], use_bin_type=True))
    except (RosterError, TypeError, ValueError):
        raise InviteError("Mã mời không đúng định dạng", "invite code has the wrong layout") from None
    if not isinstance(seat, Seat) or not verify(admin_pk, signed_message(KIND_SEAT, body), seat.signature):
        raise InviteError("Chữ ký trong mã mời không hợp lệ", "invite code signature does not verify")
    for a in addresses:
        parse_address(a)
    return Invite(admin_pk, seat, seed, addresses)


def invite_qr_text(code: str) -> str:
    """The code as a QR for a terminal (segno, compact half-block characters)."""
    out = io.StringIO()
    segno.make(code, error="m").terminal(out=out, compact=True)
    return out.getvalue()
