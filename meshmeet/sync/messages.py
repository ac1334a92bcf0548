"""Sync protocol messages and their msgpack encoding (service 0x20 bodies).

Every message is a msgpack array whose first element is the message kind. Layouts are
byte-exact in docs/protocol/sync.md. `decode` turns any bytes into a message or raises
ProtocolError, never another exception. This module must never touch the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Union

import msgpack

from ..store.batch import MAX_SEQ, SIGNATURE_BYTES
from ..store.chunks import CHUNK_BYTES, HASH_BYTES
from ..store.errors import ProtocolError

PROTOCOL_VERSION = 1
VECTOR_HASH_BYTES = 16
NODE_ID_BYTES = 8
MAX_MESSAGE_BYTES = 65_533   # one link message (wire: 65,534 B) minus the service byte
CHUNK_PIECE_BYTES = 60_000   # a chunk travels in pieces of at most this many bytes
MAX_VECTOR_ORIGINS = 65536
MAX_WANT_HASHES = 256

HELLO, VECTOR, BATCH, WANT, CHUNK, NO_CHUNK, HAVE = 1, 2, 3, 4, 5, 6, 7


@dataclass(frozen=True)
class Hello:
    """Sent by both sides on connect: a 16-byte hash of the sender's version vector."""

    vector_hash: bytes
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Vector:
    """The sender's version vector: node id (16 hex digits) -> highest gap-free sequence."""

    vector: dict[str, int]


@dataclass(frozen=True)
class Batch:
    """A signed change batch, relayed unchanged (see batch.py)."""

    body: bytes
    sig: bytes


@dataclass(frozen=True)
class Want:
    """Please send these chunks (SHA-256 names)."""

    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class Chunk:
    """A piece of a chunk: bytes offset..offset+len(data) of a chunk of `total` bytes."""

    sha256: bytes
    offset: int
    total: int
    data: bytes


@dataclass(frozen=True)
class NoChunk:
    """The sender does not hold these chunks (yet)."""

    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class Have:
    """The sender now holds these chunks (feature "swarm/1" only: never sent to a peer without it)."""

    hashes: tuple[bytes, ...]


Message = Union[Hello, Vector, Batch, Want, Chunk, NoChunk, Have]


def vector_hash(vector: dict[str, int]) -> bytes:
    """BLAKE2b-128 over the canonical encoding of a version vector (zero entries dropped)."""
    items = sorted((bytes.fromhex(o), s) for o, s in vector.items() if s > 0)
    data = msgpack.packb([[o, s] for o, s in items], use_bin_type=True)
    return hashlib.blake2b(data, digest_size=VECTOR_HASH_BYTES, person=b"meshmeet-vv").digest()


def encode(msg: Message) -> bytes:
    if isinstance(msg, Hello):
        obj: Any = [HELLO, msg.version, msg.vector_hash]
    elif isinstance(msg, Vector):
        obj = [VECTOR, {bytes.fromhex(o): s for o, s in sorted(msg.vector.items()) if s > 0}]
    elif isinstance(msg, Batch):
        obj = [BATCH, msg.body, msg.sig]
    elif isinstance(msg, Want):
        obj = [WANT, list(msg.hashes)]
    elif isinstance(msg, Chunk):
        obj = [CHUNK, msg.sha256, msg.offset, msg.total, msg.data]
    elif isinstance(msg, NoChunk):
        obj = [NO_CHUNK, list(msg.hashes)]
    elif isinstance(msg, Have):
        obj = [HAVE, list(msg.hashes)]
    else:
        raise TypeError(f"not a sync message: {msg!r}")
    return msgpack.packb(obj, use_bin_type=True)


def _hashes(value: Any) -> tuple[bytes, ...]:
    if type(value) is not tuple or not 0 < len(value) <= MAX_WANT_HASHES:
        raise ProtocolError("bad chunk list")
    if not all(isinstance(h, bytes) and len(h) == HASH_BYTES for h in value):
        raise ProtocolError("bad chunk name")
    return tuple(value)


def decode(data: bytes) -> Message:
    """Parse one message; ProtocolError on anything else."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError("message too large or not bytes")
    try:
        obj = msgpack.unpackb(bytes(data), raw=False, strict_map_key=False, use_list=False)
    except Exception as exc:  # msgpack raises many types on junk; all mean "not a message"
        raise ProtocolError(f"not msgpack ({type(exc).__name__})") from None
    if type(obj) is not tuple or not obj or type(obj[0]) is not int:
        raise ProtocolError("not a sync message")
    kind, args = obj[0], obj[1:]
    if kind == HELLO and len(args) == 2:
        version, h = args
        if type(version) is not int or not isinstance(h, bytes) or len(h) != VECTOR_HASH_BYTES:
            raise ProtocolError("bad hello")
        if version < PROTOCOL_VERSION:
            raise ProtocolError(f"unsupported protocol version {version}")
        # A higher version is read as this one: a newer node speaks version 1 to a peer until the
        # peer's capabilities name the newer one (docs/protocol.md, "Compatibility").
        return Hello(h, version)
    if kind == VECTOR and len(args) == 1:
        raw = args[0]
        if not isinstance(raw, dict) or len(raw) > MAX_VECTOR_ORIGINS:
            raise ProtocolError("bad vector")
        vector = {}
        for origin, seq in raw.items():
            if not isinstance(origin, bytes) or len(origin) != NODE_ID_BYTES or type(seq) is not int \
                    or not 0 < seq <= MAX_SEQ:
                raise ProtocolError("bad vector entry")
            vector[origin.hex()] = seq
        return Vector(vector)
    if kind == BATCH and len(args) == 2:
        body, sig = args
        if not isinstance(body, bytes) or not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
            raise ProtocolError("bad batch message")
        return Batch(body, sig)
    if kind == WANT and len(args) == 1:
        return Want(_hashes(args[0]))
    if kind == NO_CHUNK and len(args) == 1:
        return NoChunk(_hashes(args[0]))
    if kind == HAVE and len(args) == 1:
        return Have(_hashes(args[0]))
    if kind == CHUNK and len(args) == 4:
        sha, offset, total, payload = args
        if not isinstance(sha, bytes) or len(sha) != HASH_BYTES or not isinstance(payload, bytes) \
                or type(offset) is not int or type(total) is not int \
                or not 0 < len(payload) <= CHUNK_PIECE_BYTES or not 0 < total <= CHUNK_BYTES \
                or not 0 <= offset <= total - len(payload):
            raise ProtocolError("bad chunk piece")
        return Chunk(sha, offset, total, payload)
    raise ProtocolError(f"unknown message kind {kind} or wrong arity")
