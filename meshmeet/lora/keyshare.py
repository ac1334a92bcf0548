"""The commune LoRa key as a signed offer: made by HQ, passed along the encrypted links by members.

An offer is `msgpack(["key", issued_at, signer, key, signature])` where `signer` is the short id of
an hq-role roster member and the Ed25519 signature covers KEY_LABEL || commune id || issued_at ||
signer || key. A key made after a revocation is a v2 offer, `msgpack(["key2", issued_at, signer,
key, signature, excluded])`, whose signature also covers the sorted short ids it must never reach
(KEY_LABEL_V2 ... || u16 each): a node never hands it to a link peer on that list, even before the
revocation entry itself has reached it. Members store the offer as it came (DIR/lora.key, 0600) and hand it to each link
peer on link-up; the highest (issued_at, signer) wins, so a rotated key replaces an old one. The
key itself is secret: it only ever travels inside the encrypted links, whose peers are roster
members. This module is sans-IO; it must never accept an offer that is not signed by an hq-role
member of this commune, and never raise anything but KeyShareError on hostile bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Protocol

import msgpack
import nacl.utils

from ..errors import MeshmeetError
from ..membership.identity import KeyPair
from .frames import KEY_BYTES

KEY_LABEL = b"meshmeet-lora-key-v1"
KEY_LABEL_V2 = b"meshmeet-lora-key-v2"
OFFER_TAG = "key"
OFFER_TAG_V2 = "key2"
SIGNATURE_BYTES = 64
MAX_EXCLUDED = 1024
MAX_OFFER_BYTES = 256 + 3 * MAX_EXCLUDED
AUTHORITY_ROLE = "hq"


class KeyShareError(MeshmeetError):
    """A LoRa key offer did not parse, or is not signed by this commune's HQ."""

    def __init__(self, en: str, vi: str = "đề nghị khóa LoRa không hợp lệ") -> None:
        super().__init__(f"Khóa LoRa bị từ chối: {vi}", f"LoRa key refused: {en}")


class MemberView(Protocol):
    role: str
    public_key: bytes


@dataclass(frozen=True)
class KeyOffer:
    issued_at: int
    signer: int
    key: bytes
    signature: bytes
    excluded: tuple[int, ...] = ()  # v2: short ids (revoked seats) this key must never reach

    @property
    def rank(self) -> tuple[int, int]:
        """Offers compare by (issued_at, signer): the higher one replaces the lower."""
        return (self.issued_at, self.signer)

    def to_bytes(self) -> bytes:
        if not self.excluded:
            return msgpack.packb([OFFER_TAG, self.issued_at, self.signer, self.key, self.signature], use_bin_type=True)
        return msgpack.packb([OFFER_TAG_V2, self.issued_at, self.signer, self.key, self.signature, list(self.excluded)],
                             use_bin_type=True)

    def may_reach(self, short_id: int) -> bool:
        """False for a seat this key was made to shut out."""
        return short_id not in self.excluded


def signed_bytes(commune_id: bytes, issued_at: int, signer: int, key: bytes, excluded: tuple[int, ...] = ()) -> bytes:
    head = struct.pack(">QH", issued_at, signer) + key
    if not excluded:
        return KEY_LABEL + commune_id + head
    return KEY_LABEL_V2 + commune_id + head + b"".join(struct.pack(">H", s) for s in excluded)


def make_offer(node_key: KeyPair, commune_id: bytes, signer: int, issued_at: int, key: bytes | None = None,
               excluded: tuple[int, ...] | list[int] = ()) -> KeyOffer:
    """A fresh random commune LoRa key (or `key`), signed by this HQ node; `excluded`: revoked seats."""
    key = nacl.utils.random(KEY_BYTES) if key is None else key
    if len(key) != KEY_BYTES:
        raise ValueError("a LoRa key is 32 bytes")
    ex = tuple(sorted(set(excluded)))
    if len(ex) > MAX_EXCLUDED or not all(0 <= s <= 0xFFFF for s in ex):
        raise ValueError("too many or invalid excluded short ids")
    return KeyOffer(issued_at, signer, key, node_key.sign(signed_bytes(commune_id, issued_at, signer, key, ex)), ex)


def decode_offer(body: bytes) -> KeyOffer:
    """Parse an offer's shape (no signature check yet)."""
    if len(body) > MAX_OFFER_BYTES:
        raise KeyShareError("offer too long")
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception:  # msgpack raises several types on junk; all mean "not an offer"
        raise KeyShareError("not msgpack") from None
    if isinstance(obj, list) and len(obj) == 6 and obj[0] == OFFER_TAG_V2:
        excluded = obj.pop()
        ok = (isinstance(excluded, list) and 0 < len(excluded) <= MAX_EXCLUDED
              and all(type(x) is int and 0 <= x <= 0xFFFF for x in excluded) and excluded == sorted(set(excluded)))
        if not ok:
            raise KeyShareError("bad excluded list")
    elif isinstance(obj, list) and len(obj) == 5 and obj[0] == OFFER_TAG:
        excluded = []
    else:
        raise KeyShareError("bad shape")
    _, issued_at, signer, key, sig = obj
    if type(issued_at) is not int or not 0 <= issued_at < 1 << 63 or type(signer) is not int or not 0 <= signer <= 0xFFFF:
        raise KeyShareError("bad numbers")
    if not isinstance(key, bytes) or len(key) != KEY_BYTES or not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
        raise KeyShareError("bad key or signature length")
    return KeyOffer(issued_at, signer, key, sig, tuple(excluded))


def check_offer(offer: KeyOffer, commune_id: bytes, member_of: Callable[[int], MemberView | None],
                verify: Callable[[bytes, bytes, bytes], bool]) -> None:
    """Raise KeyShareError unless an hq-role member of this commune signed the offer."""
    member = member_of(offer.signer)
    if member is None or member.role != AUTHORITY_ROLE:
        raise KeyShareError(f"signer {offer.signer} is not an HQ member", f"người ký {offer.signer} không phải trụ sở")
    if not verify(member.public_key, signed_bytes(commune_id, offer.issued_at, offer.signer, offer.key, offer.excluded),
                  offer.signature):
        raise KeyShareError("bad signature", "chữ ký sai")


def accept_offer(body: bytes, commune_id: bytes, member_of: Callable[[int], MemberView | None],
                 verify: Callable[[bytes, bytes, bytes], bool]) -> KeyOffer:
    """decode_offer then check_offer."""
    offer = decode_offer(body)
    check_offer(offer, commune_id, member_of, verify)
    return offer


def better(new: KeyOffer, current: KeyOffer | None) -> bool:
    """Should `new` replace `current`?"""
    return current is None or new.rank > current.rank
