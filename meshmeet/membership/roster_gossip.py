"""Roster gossip: sans-IO replication of roster entries over one link (service ROSTER 0x10).

Bodies are msgpack [GOSSIP_HAVE, digest] or [GOSSIP_ENTRIES, [entry bytes...]]; the format is in
docs/protocol/membership.md. Received entries go through Roster.merge, which checks every
signature; this module only carries bytes between a link and a Roster.

It must never do I/O, read a clock, keep state of its own beyond the Roster it was given, or add
an entry to the roster by any path other than Roster.merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import msgpack

from .roster_entries import DIGEST_BYTES, MAX_ENTRY_BYTES, Entry, RosterError, is_bytes_of_length, pack

if TYPE_CHECKING:  # roster.py re-exports this module's names, so a runtime import would be a cycle
    from .roster import Roster

GOSSIP_HAVE = 1
GOSSIP_ENTRIES = 2
GOSSIP_CHUNK_BYTES = 32 * 1024
MAX_GOSSIP_BODY_BYTES = GOSSIP_CHUNK_BYTES + 4 * MAX_ENTRY_BYTES


@dataclass(frozen=True)
class GossipResult:
    """What one received gossip message did: bodies to send back, entries newly accepted."""

    replies: tuple[bytes, ...]
    new_entries: tuple[Entry, ...]


class RosterGossip:
    """Sans-IO roster replication over one link (bodies after the ROSTER service byte).

    On link up each side sends HAVE(digest). A side receiving a HAVE with a different digest
    sends all its entries in chunks (ENTRIES). ENTRIES never trigger a reply, so there is no
    ping-pong. Pending claims travel too, since the peer may hold their seat. The node sends
    every newly accepted entry (from a merge or a join) to all its links with announce();
    duplicates are cheap and ignored.
    """

    def __init__(self, roster: Roster) -> None:
        self.roster = roster

    def link_up(self) -> bytes:
        """The HAVE(digest) body to send when the link comes up."""
        return pack([GOSSIP_HAVE, self.roster.digest()])

    def announce(self, entries: Iterable[Entry]) -> list[bytes]:
        """ENTRIES bodies carrying `entries` (chunked to GOSSIP_CHUNK_BYTES)."""
        bodies, chunk, size = [], [], 0
        for e in entries:
            if chunk and size + len(e.raw) > GOSSIP_CHUNK_BYTES:
                bodies.append(pack([GOSSIP_ENTRIES, chunk]))
                chunk, size = [], 0
            chunk.append(e.raw)
            size += len(e.raw)
        if chunk:
            bodies.append(pack([GOSSIP_ENTRIES, chunk]))
        return bodies

    def receive(self, body: bytes) -> GossipResult:
        """Handle one body; RosterError on a malformed message (the link may then be closed)."""
        if type(body) is not bytes or len(body) > MAX_GOSSIP_BODY_BYTES:
            raise RosterError("Tin danh sách quá lớn", "roster gossip message too large")
        try:
            msg = msgpack.unpackb(body, raw=False)
        except Exception:
            msg = None
        if (
            isinstance(msg, list)
            and len(msg) == 2
            and msg[0] == GOSSIP_HAVE
            and is_bytes_of_length(msg[1], DIGEST_BYTES)
        ):
            if msg[1] == self.roster.digest():
                return GossipResult((), ())
            everything = [*self.roster.entries(), *self.roster.pending_claims()]  # the peer may hold their seat
            return GossipResult(tuple(self.announce(everything)), ())
        if (
            isinstance(msg, list)
            and len(msg) == 2
            and msg[0] == GOSSIP_ENTRIES
            and isinstance(msg[1], list)
            and all(type(r) is bytes for r in msg[1])
        ):
            return GossipResult((), tuple(self.roster.merge(msg[1])))
        raise RosterError("Tin danh sách bị hỏng", "roster gossip message is malformed")
