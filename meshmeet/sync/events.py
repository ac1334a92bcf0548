"""What a SyncSession gives its driver besides bytes: the events of one session, as dataclasses.

`Outgoing` is bytes for the peer; the others tell the driver what happened (a batch applied, a
change or batch refused, a chunk stored or refused, the peer speaking another protocol). This
module must never hold behaviour: only the shapes session.py returns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outgoing:
    """Bytes for the peer; `bulk` ones (documents) go behind everything live."""

    data: bytes
    bulk: bool = False


@dataclass(frozen=True)
class InSync:
    """The peer's version vector hash equals ours."""


@dataclass(frozen=True)
class Applied:
    """A batch from the peer was merged into the store."""

    origin: str
    first_seq: int
    last_seq: int
    changes: int
    rejected: int
    tables: frozenset[str]


@dataclass(frozen=True)
class ChangeRejected:
    """A signed change whose origin lacked authority (or that was malformed): not applied."""

    origin: str
    seq: int
    reason: str


@dataclass(frozen=True)
class BatchForged:
    """A batch whose signature does not verify: dropped."""

    reason: str


@dataclass(frozen=True)
class ChunkStored:
    sha256: bytes
    pending_chunks: int


@dataclass(frozen=True)
class ChunkRefused:
    """A chunk whose bytes do not hash to its name (it will be asked for again)."""

    sha256: bytes


@dataclass(frozen=True)
class ProtocolViolation:
    """The peer sent bytes that are not this protocol; the driver should close the link."""

    reason: str


Event = InSync | Applied | ChangeRejected | BatchForged | ChunkStored | ChunkRefused | ProtocolViolation
