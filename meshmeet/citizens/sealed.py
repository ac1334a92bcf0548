"""A resident's contact (name, phone, Zalo user id) sealed to HQ for the replicated feedback row.

The hall that received the contact keeps it in its own contact book (contacts.py) and writes into
the replicated row only the contact sealed to every HQ member of the roster (X25519 of HQ's
Ed25519 node key). Two formats, both opened by `unseal` (docs/protocol/citizens.md):

* v1 (`seal`): one libsodium sealed box per HQ (`crypto_box_seal`: a fresh ephemeral key per box).
* v2 (`Sealer`, the page's): one ephemeral X25519 key shared by the contacts sealed within
  ROTATE_S (at most MAX_USES of them), held in memory only and then dropped, its key agreement with
  each HQ key done once (`crypto_box_beforenm`); each contact is then `crypto_box` with a fresh
  random 24-byte nonce (XSalsa20-Poly1305): ~5 µs instead of ~160 µs. As with a sealed box, only
  an HQ key opens it, and the hall's own node key never can (it is not used), so a hall key stolen
  later reveals nothing the hall has deleted.

Relays and other halls carry it and cannot read it; no TV or page ever gets it. Pure: keys, `now`
and randomness in, bytes out. This module must never log a contact or a key, and never write an
ephemeral key anywhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from typing import Callable

import msgpack
import nacl.utils
from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

MAX_SEALED_BYTES = 1024  # the law's bound on the column (authority.py): 2 HQs x ~300 B
MAX_CONTACT_FIELD_CHARS = 128
V2 = 2                   # the first element of a v2 blob (a v1 blob starts with an array)
ROTATE_S = 60.0          # an ephemeral key seals contacts for at most this long ...
MAX_USES = 4096          # ... and at most this many
NONCE_BYTES = Box.NONCE_SIZE  # 24


@dataclass(frozen=True)
class Contact:
    name: str | None = None
    phone: str | None = None
    zalo_user_id: str | None = None

    def empty(self) -> bool:
        return not (self.name or self.phone or self.zalo_user_id)


@functools.lru_cache(maxsize=16)
def _x25519(ed25519_public_key: bytes) -> PublicKey:
    """One HQ key as X25519 (the Ed25519 -> X25519 conversion costs ~0.1 ms: done once)."""
    return VerifyKey(ed25519_public_key).to_curve25519_public_key()


@functools.lru_cache(maxsize=16)
def _box(ed25519_public_key: bytes) -> SealedBox:
    """The sealed box to one HQ key."""
    return SealedBox(_x25519(ed25519_public_key))


def seal(contact: Contact, hq_keys: dict[str, bytes]) -> bytes:
    """v1: [[hq node id, sealed box], ...] (msgpack) for every HQ `node id -> Ed25519 public key`."""
    plain = _plain(contact)
    boxes = [[nid, _box(pk).encrypt(plain)] for nid, pk in sorted(hq_keys.items())]
    out = msgpack.packb(boxes)
    if len(out) > MAX_SEALED_BYTES:
        raise ValueError("sealed contact too large")
    return out


def _plain(contact: Contact) -> bytes:
    return msgpack.packb([contact.name, contact.phone, contact.zalo_user_id])


def seal_v2(contact: Contact, hq_keys: dict[str, bytes], ephemeral: PrivateKey,
            nonce: Callable[[], bytes] = lambda: nacl.utils.random(NONCE_BYTES),
            boxes: dict[bytes, Box] | None = None) -> bytes:
    """[2, ephemeral public key, [[hq node id, nonce ‖ crypto_box], ...]] (msgpack). `boxes` caches
    the key agreement per HQ key for this ephemeral key."""
    plain = _plain(contact)
    entries = []
    for nid, pk in sorted(hq_keys.items()):
        box = None if boxes is None else boxes.get(pk)
        if box is None:
            box = Box(ephemeral, _x25519(pk))
            if boxes is not None:
                boxes[pk] = box
        entries.append([nid, bytes(box.encrypt(plain, nonce()))])
    out = msgpack.packb([V2, bytes(ephemeral.public_key), entries])
    if len(out) > MAX_SEALED_BYTES:
        raise ValueError("sealed contact too large")
    return out


class Sealer:
    """v2 sealing for one node's submissions: the ephemeral key is replaced once it is ROTATE_S old
    or has sealed MAX_USES contacts; the replaced one is dropped (never stored)."""

    def __init__(self, *, rotate_s: float = ROTATE_S, max_uses: int = MAX_USES,
                 new_key: Callable[[], PrivateKey] = PrivateKey.generate,
                 nonce: Callable[[], bytes] = lambda: nacl.utils.random(NONCE_BYTES)) -> None:
        self.rotate_s, self.max_uses, self._new_key, self._nonce = rotate_s, max_uses, new_key, nonce
        self._key: PrivateKey | None = None
        self._boxes: dict[bytes, Box] = {}
        self._since = 0.0
        self._uses = 0
        self.keys_made = 0

    def seal(self, contact: Contact, hq_keys: dict[str, bytes], now: float) -> bytes:
        if (self._key is None or self._uses >= self.max_uses or not 0.0 <= now - self._since < self.rotate_s):
            self._key, self._boxes, self._since, self._uses = self._new_key(), {}, now, 0
            self.keys_made += 1
        self._uses += 1
        return seal_v2(contact, hq_keys, self._key, self._nonce, self._boxes)


def _open(blob: bytes, node_id: str, key: SigningKey) -> bytes:
    """The plaintext of `node_id`'s entry in a v1 or v2 blob (raises when there is none or it fails)."""
    top = msgpack.unpackb(blob, raw=False, max_array_len=8, max_bin_len=MAX_SEALED_BYTES, max_str_len=64)
    if isinstance(top, list) and len(top) == 3 and top[0] == V2:
        _, eph, entries = top
        box = next(b for nid, b in entries if nid == node_id)
        if not isinstance(eph, bytes) or not isinstance(box, bytes) or len(box) < NONCE_BYTES:
            raise ValueError("bad v2 entry")
        return Box(key.to_curve25519_private_key(), PublicKey(eph)).decrypt(box[NONCE_BYTES:], box[:NONCE_BYTES])
    box = next(b for nid, b in top if nid == node_id)
    return SealedBox(key.to_curve25519_private_key()).decrypt(box)


def unseal(blob: bytes, node_id: str, key: SigningKey) -> Contact | None:
    """The contact, when `blob` (v1 or v2) holds a box for `node_id` that `key` opens; else None."""
    try:
        fields = msgpack.unpackb(_open(blob, node_id, key), raw=False,
                                 max_str_len=MAX_CONTACT_FIELD_CHARS * 4, max_array_len=3)
        name, phone, zalo = fields
    except (CryptoError, StopIteration, ValueError, TypeError, msgpack.ExtraData,
            msgpack.FormatError, msgpack.StackError):
        return None
    if not all(v is None or isinstance(v, str) for v in (name, phone, zalo)):
        return None
    return Contact(name, phone, zalo)
