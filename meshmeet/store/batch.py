"""Signed change batches: the unit that is logged, signed, sent and relayed.

A batch holds consecutive changes of one origin node (sequence numbers first_seq..last_seq).
Its body is msgpack and column-oriented: consecutive changes to the same table with the same
operation and the same columns form a *run*, stored as one list per key part and one list
per column (compact on the wire, and cheap to check and insert in bulk). The origin signs
`SIGN_DOMAIN + SHA-256(body)` with its Ed25519 node key (version 3; version 2 batches, which
signed the whole body, are still accepted); relays forward body and signature unchanged so
every node can check the origin. The origin's public key travels in the body and the
origin id is derived from it. Byte layout: docs/protocol/sync.md. This module must never
touch the database or decide authority.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from typing import Any, Iterator, Sequence

import msgpack

from ..membership.identity import KeyPair, node_id_of, verify
from .errors import ProtocolError

BATCH_VERSION = 3
SIGN_DOMAIN = b"meshmeet/sync/batch/v3\x00"  # signed: SIGN_DOMAIN + SHA-256(body)
# Version 2 signed SIGN_DOMAIN_V2 + the whole body. Ed25519 hashes what it signs with SHA-512,
# which libsodium computes at ~300 MB/s; SHA-256 first (CPU instructions on x86 and ARMv8)
# makes checking a 53 KB batch 2.4x cheaper (235 -> 99 us here). Still accepted when received.
BATCH_VERSION_V2 = 2
SIGN_DOMAIN_V2 = b"meshmeet/sync/batch/v2\x00"
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
MAX_BATCH_CHANGES = 4096
MAX_BATCH_BYTES = 65_400  # a BATCH message must fit one link message (wire: 65,534 B with the service byte)
MAX_SEQ = (1 << 63) - 1
OP_UPSERT = 0
OP_DELETE = 1
OPS = {"upsert": OP_UPSERT, "delete": OP_DELETE}
OP_NAMES = {v: k for k, v in OPS.items()}
_INT_ONLY = frozenset({int})

# One change spelled out: (hlc, table id, op, primary key, {column index: value}).
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


@dataclass(frozen=True)
class Run:
    """Consecutive changes to one table with one op and the same columns, column-wise."""

    table_id: int
    op: int
    first_index: int           # position of the run's first change in the batch
    hlcs: list[int]
    key_columns: tuple         # one tuple per key part, each of len(hlcs) values
    columns: dict              # column index -> tuple of len(hlcs) values

    def entries(self) -> Iterator[Entry]:
        names = list(self.columns)
        cols = [self.columns[c] for c in names]
        for j, hlc in enumerate(self.hlcs):
            yield (hlc, self.table_id, self.op, tuple(k[j] for k in self.key_columns),
                   {c: col[j] for c, col in zip(names, cols)})


@dataclass(frozen=True, eq=False)
class SignedBatch:
    """A verified (or locally made) batch: its bytes, its origin, and its runs."""

    body: bytes
    sig: bytes
    origin: str
    public_key: bytes
    first_seq: int
    last_seq: int
    max_hlc: int
    base_hlc: int
    packed_runs: tuple

    @cached_property
    def runs(self) -> tuple[Run, ...]:
        out = []
        hlc = self.base_hlc
        index = 0
        for table_op, deltas, key_columns, columns in self.packed_runs:
            hlcs = list(accumulate(deltas, initial=hlc))[1:]
            hlc = hlcs[-1]
            out.append(Run(table_op >> 1, table_op & 1, index, hlcs, key_columns, columns))
            index += len(hlcs)
        return tuple(out)

    @property
    def entries(self) -> list[Entry]:
        return [e for run in self.runs for e in run.entries()]

    def changes(self) -> list[Change]:
        return [Change(self.origin, self.first_seq + i, e[0], e[1], OP_NAMES[e[2]], e[3], e[4])
                for i, e in enumerate(self.entries)]

    @property
    def wire_bytes(self) -> int:
        return len(self.body) + len(self.sig)


def _pack_runs(entries: Sequence[Entry], base: int) -> list[list]:
    runs: list[list] = []
    shape: tuple | None = None
    prev = base
    for hlc, tid, op, pk, values in entries:
        if hlc < prev:
            raise ValueError("HLC values in a batch must not decrease")
        cols = sorted(values)
        this = (tid, op, len(pk), tuple(cols))
        if this != shape:
            shape = this
            run: list = [(tid << 1) | op, [], [[] for _ in pk], {c: [] for c in cols}]
            runs.append(run)
        run[1].append(hlc - prev)
        for part, column in zip(pk, run[2]):
            column.append(part)
        for c in cols:
            run[3][c].append(values[c])
        prev = hlc
    return runs


def encode_batch(key: KeyPair, first_seq: int, entries: Sequence[Entry]) -> SignedBatch:
    """Pack and sign consecutive changes made by `key`'s node."""
    if not entries:
        raise ValueError("empty batch")
    base = entries[0][0]
    runs = _pack_runs(entries, base)
    body = msgpack.packb([BATCH_VERSION, key.public_key, first_seq, base, runs], use_bin_type=True)
    sig = key.sign(signed_bytes(BATCH_VERSION, body))
    packed = tuple((r[0], tuple(r[1]), tuple(tuple(k) for k in r[2]), {c: tuple(v) for c, v in r[3].items()})
                   for r in runs)
    return SignedBatch(body, sig, key.node_id, key.public_key, first_seq, first_seq + len(entries) - 1,
                       entries[-1][0], base, packed)


def batch_format(body: bytes) -> int | None:
    """The format version of a held batch body (msgpack [version, ...]) without decoding it; None if unreadable."""
    if len(body) >= 2 and 0x91 <= body[0] <= 0x9F and body[1] < 0x80:
        return body[1]
    return None


def signed_bytes(version: int, body: bytes) -> bytes:
    """What the origin's Ed25519 signature covers, for a body of batch format `version`."""
    if version == BATCH_VERSION_V2:
        return SIGN_DOMAIN_V2 + body
    return SIGN_DOMAIN + hashlib.sha256(body).digest()


def _unpack(body: bytes) -> Any:
    try:
        # Tuples, not lists: tuples of plain values are left alone by the cyclic GC.
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
    if not (type(top) is tuple and len(top) == 5 and top[0] in (BATCH_VERSION_V2, BATCH_VERSION) and type(top[0]) is int):
        raise ProtocolError("bad batch header")
    _, pk, first_seq, base, runs = top
    if not (isinstance(pk, bytes) and len(pk) == PUBLIC_KEY_BYTES):
        raise ProtocolError("bad origin key")
    if type(first_seq) is not int or type(base) is not int or not 1 <= first_seq <= MAX_SEQ or not 0 <= base < 1 << 63:
        raise ProtocolError("bad sequence or clock")
    if type(runs) is not tuple or not runs:
        raise ProtocolError("bad run list")
    count = 0
    hlc = base
    for run in runs:  # shape only; the store checks what the values may be
        if type(run) is not tuple or len(run) != 4:
            raise ProtocolError("bad run")
        table_op, deltas, key_columns, columns = run
        if type(table_op) is not int or table_op < 0 or type(deltas) is not tuple or not deltas \
                or type(key_columns) is not tuple or not key_columns or type(columns) is not dict:
            raise ProtocolError("bad run header")
        n = len(deltas)
        if not set(map(type, deltas)) <= _INT_ONLY or min(deltas) < 0:
            raise ProtocolError("bad clock deltas")
        for column in (*key_columns, *columns.values()):
            if type(column) is not tuple or len(column) != n:
                raise ProtocolError("bad run column")
        count += n
        hlc += sum(deltas)
    if count > MAX_BATCH_CHANGES or first_seq + count - 1 > MAX_SEQ:
        raise ProtocolError("too many changes")
    if hlc >= 1 << 63:
        raise ProtocolError("clock overflow")
    if check_signature and not verify(pk, signed_bytes(top[0], body), sig):
        raise ForgedBatchError()
    return SignedBatch(body, sig, node_id_of(pk), pk, first_seq, first_seq + count - 1, hlc, base, runs)


class ForgedBatchError(ProtocolError):
    """The signature does not match the body and the origin key it names."""

    def __init__(self) -> None:
        super().__init__("bad batch signature")
