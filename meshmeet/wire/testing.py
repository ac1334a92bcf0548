"""Helpers for tests and simulators: a roster of generated members and in-memory link pairs.

Deterministic when given seeds, so simulators (tree, sync) can build many linked nodes
without sockets. This module must never be imported by production code paths, and never
read a clock: callers pass `now`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..membership.identity import KeyPair
from .connection import LinkConnection
from .events import Event, Role

TEST_COMMUNE_ID = bytes(range(0xA0, 0xB0))


@dataclass
class TestRoster:
    """Short id -> key pair, with `lookup` suitable for LinkConnection."""

    __test__ = False  # not a pytest class
    members: dict[int, KeyPair] = field(default_factory=dict)

    def add(self, short_id: int, seed: bytes | None = None) -> KeyPair:
        if seed is None:
            seed = hashlib.blake2b(short_id.to_bytes(2, "big"), digest_size=32, person=b"wire-testing").digest()
        key = KeyPair.from_seed(seed)
        self.members[short_id] = key
        return key

    def lookup(self, short_id: int) -> bytes | None:
        key = self.members.get(short_id)
        return None if key is None else key.public_key


def make_connection(
    roster: TestRoster, short_id: int, role: Role, now: float = 0.0, commune_id: bytes = TEST_COMMUNE_ID, **kwargs
) -> LinkConnection:
    return LinkConnection(
        role=role,
        me=roster.members[short_id],
        my_short_id=short_id,
        commune_id=commune_id,
        lookup=roster.lookup,
        now=now,
        **kwargs,
    )


def pump(a: LinkConnection, b: LinkConnection, now: float) -> tuple[list[Event], list[Event]]:
    """Move bytes both ways until both are quiet; the events each side produced."""
    events_a: list[Event] = []
    events_b: list[Event] = []
    while True:
        to_b, to_a = a.data_to_send(), b.data_to_send()
        if not to_a and not to_b:
            return events_a, events_b
        if to_b:
            events_b += b.receive_data(to_b, now)
        if to_a:
            events_a += a.receive_data(to_a, now)


def connected_pair(
    roster: TestRoster | None = None, initiator: int = 1, responder: int = 2, now: float = 0.0, **kwargs
) -> tuple[LinkConnection, LinkConnection]:
    """An initiator and a responder that have completed the handshake."""
    if roster is None:
        roster = TestRoster()
    for short_id in (initiator, responder):
        if short_id not in roster.members:
            roster.add(short_id)
    a = make_connection(roster, initiator, Role.INITIATOR, now, **kwargs)
    b = make_connection(roster, responder, Role.RESPONDER, now, **kwargs)
    a.start(now)
    pump(a, b, now)
    return a, b
