"""Signed change batches: the unit that is logged, signed, sent and relayed.

A batch holds consecutive changes of one origin node (sequence numbers first_seq..last_seq).
Its body is msgpack; the origin signs `SIGN_DOMAIN + body` with its Ed25519 node key, and
relays forward the body and signature unchanged so every node can check the origin. The
origin's public key travels in the body and the origin id is derived from it. Byte layout:
docs/protocol/sync.md. This module must never touch the database or decide authority.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import msgpack

from ..identity import KeyPair, node_id_of, verify
from .errors import ProtocolError

BATCH_VERSION = 1
SIGN_DOMAIN = b"meshmeet/sync/batch/v1\x00"
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
MAX_BATCH_CHANGES = 4096
MAX_BATCH_BYTES = 65_400  # a BATCH message must fit one link message (wire: 65,534 B with the service byte)
MAX_SEQ = (1 << 63) - 1
OP_UPSERT = 0
OP_DELETE = 1
OPS = {"upsert": OP_UPSERT, "delete": OP_DELETE}
OP_NAMES = {v: k for k, v in OPS.items()}

# One decoded change inside a batch: (hlc, table id, op, primary key, {column index: value}).
Entry = tuple[int, int, int, tuple, dict]


@dataclass(frozen=True)
class Change:
    """A change as the rest of the program sees it."""

    origin: str
    seq: int
    hlc: int
    table_id: int
    op: str
    key: tuple
    values: dict


@dataclass(frozen=True, eq=False)
class SignedBatch:
    """A verified (or locally made) batch. `packed` holds the changes as on the wire:
    (hlc delta, table id << 1 | op, key, values) tuples; `entries` spells them out."""

    body: bytes
    sig: bytes
    origin: str
    public_key: bytes
    first_seq: int
    last_seq: int
    max_hlc: int
    base_hlc: int
    packed: tuple[tuple[int, int, tuple, dict], ...]

    @cached_property
    def entries(self) -> tuple[Entry, ...]:
        out = []
        hlc = self.base_hlc
        for delta, table_op, key, values in self.packed:
            hlc += delta
            out.append((hlc, table_op >> 1, table_op & 1, key, values))
        return tuple(out)

    def changes(self) -> list[Change]:
        return [Change(self.origin, self.first_seq + i, e[0], e[1], OP_NAMES[e[2]], e[3], e[4])
                for i, e in enumerate(self.entries)]

    @property
    def wire_bytes(self) -> int:
        return len(self.body) + len(self.sig)


def encode_batch(key: KeyPair, first_seq: int, entries: Sequence[Entry]) -> SignedBatch:
    """Pack and sign consecutive changes made by `key`'s node."""
    if not entries:
        raise ValueError("empty batch")
    base = entries[0][0]
    packed = []
    prev = base
    for hlc, tid, op, pk, values in entries:
        if hlc < prev:
            raise ValueError("HLC values in a batch must not decrease")
        packed.append((hlc - prev, (tid << 1) | op, tuple(pk), values))
        prev = hlc
    body = msgpack.packb([BATCH_VERSION, key.public_key, first_seq, base, packed], use_bin_type=True)
    sig = key.sign(SIGN_DOMAIN + body)
    return SignedBatch(body, sig, key.node_id, key.public_key, first_seq, first_seq + len(entries) - 1,
                       prev, base, tuple(packed))


def _unpack(body: bytes) -> Any:
    try:
        # Tuples, not lists: tuples of plain values are left alone by the cyclic GC, which
        # otherwise costs about half of the decode time of a large batch.
        return msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=False)
    except Exception as exc:  # msgpack raises many types on junk; all mean "not a batch"
        raise ProtocolError(f"batch is not msgpack ({type(exc).__name__})") from None


def decode_batch(body: bytes, sig: bytes, *, check_signature: bool = True) -> SignedBatch:
    """Parse a batch; ProtocolError on any malformation or (when checked) a bad signature."""
    if not isinstance(body, bytes) or not isinstance(sig, bytes):
        raise ProtocolError("batch body and signature must be bytes")
    if len(body) > MAX_BATCH_BYTES:
        raise ProtocolError("batch too large")
    if len(sig) != SIGNATURE_BYTES:
        raise ProtocolError("bad signature length")
    top = _unpack(body)
    if not (type(top) is tuple and len(top) == 5 and top[0] == BATCH_VERSION):
        raise ProtocolError("bad batch header")
    _, pk, first_seq, base, packed = top
    if not (isinstance(pk, bytes) and len(pk) == PUBLIC_KEY_BYTES):
        raise ProtocolError("bad origin key")
    if type(first_seq) is not int or type(base) is not int or not 1 <= first_seq <= MAX_SEQ or not 0 <= base < 1 << 63:
        raise ProtocolError("bad sequence or clock")
    if type(packed) is not tuple or not 1 <= len(packed) <= MAX_BATCH_CHANGES:
        raise ProtocolError("bad change count")
    if first_seq + len(packed) - 1 > MAX_SEQ:
        raise ProtocolError("sequence overflow")
    hlc = base
    for item in packed:  # check only; the store walks `packed` itself when it applies
        if type(item) is not tuple or len(item) != 4:
            raise ProtocolError("bad change")
        delta, top_op, key, values = item
        if type(delta) is not int or delta < 0 or type(top_op) is not int or top_op < 0:
            raise ProtocolError("bad change header")
        if type(key) is not tuple or type(values) is not dict:
            raise ProtocolError("bad change key or values")
        hlc += delta
    if hlc >= 1 << 63:
        raise ProtocolError("clock overflow")
    if check_signature and not verify(pk, SIGN_DOMAIN + body, sig):
        raise ForgedBatchError()
    return SignedBatch(body, sig, node_id_of(pk), pk, first_seq, first_seq + len(packed) - 1, hlc, base,
                       packed)


class ForgedBatchError(ProtocolError):
    """The signature does not match the body and the origin key it names."""

    def __init__(self) -> None:
        super().__init__("bad batch signature")
