"""A resident's contact (name, phone, Zalo user id) sealed to HQ for the replicated feedback row.

The hall that received the contact keeps it in its own contact book (contacts.py) and writes into
the replicated row only this: for each HQ member of the roster, a libsodium sealed box (X25519 of
HQ's Ed25519 node key, anonymous sender) of the msgpack contact. Relays and other halls carry it
and cannot read it; no TV or page ever gets it. Pure: keys in, bytes out. This module must never
log a contact or a key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import msgpack
from nacl.exceptions import CryptoError
from nacl.public import SealedBox
from nacl.signing import SigningKey, VerifyKey

MAX_SEALED_BYTES = 1024  # the law's bound on the column (authority.py): 2 HQs x ~300 B
MAX_CONTACT_FIELD_CHARS = 128


@dataclass(frozen=True)
class Contact:
    name: str | None = None
    phone: str | None = None
    zalo_user_id: str | None = None

    def empty(self) -> bool:
        return not (self.name or self.phone or self.zalo_user_id)


@functools.lru_cache(maxsize=16)
def _box(ed25519_public_key: bytes) -> SealedBox:
    """The sealed box to one HQ key (the Ed25519 -> X25519 conversion costs ~0.1 ms: done once)."""
    return SealedBox(VerifyKey(ed25519_public_key).to_curve25519_public_key())


def seal(contact: Contact, hq_keys: dict[str, bytes]) -> bytes:
    """[[hq node id, sealed box], ...] (msgpack) for every HQ `node id -> Ed25519 public key`."""
    plain = msgpack.packb([contact.name, contact.phone, contact.zalo_user_id])
    boxes = [[nid, _box(pk).encrypt(plain)] for nid, pk in sorted(hq_keys.items())]
    out = msgpack.packb(boxes)
    if len(out) > MAX_SEALED_BYTES:
        raise ValueError("sealed contact too large")
    return out


def unseal(blob: bytes, node_id: str, key: SigningKey) -> Contact | None:
    """The contact, when `blob` holds a box for `node_id` that `key` opens; else None."""
    try:
        boxes = msgpack.unpackb(blob, raw=False, max_array_len=8, max_bin_len=MAX_SEALED_BYTES,
                                max_str_len=64)
        box = next(b for nid, b in boxes if nid == node_id)
        fields = msgpack.unpackb(SealedBox(key.to_curve25519_private_key()).decrypt(box), raw=False,
                                 max_str_len=MAX_CONTACT_FIELD_CHARS * 4, max_array_len=3)
        name, phone, zalo = fields
    except (CryptoError, StopIteration, ValueError, TypeError, msgpack.ExtraData,
            msgpack.FormatError, msgpack.StackError):
        return None
    if not all(v is None or isinstance(v, str) for v in (name, phone, zalo)):
        return None
    return Contact(name, phone, zalo)
