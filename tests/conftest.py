"""Fixtures and fakes shared by several test modules (one definition each).

- `pty_clock`: trio's MockClock for tests that talk to emulated modems on real ptys.
- `FakeClock`: a wall clock the test moves by hand (`clock.t += 1`), for stores and sessions.
- `Commune`: a commune's membership made in memory (admin, header, seats, claims, invites).
- `doc_vectors`: the ```vectors block of a protocol document, parsed (tests check the code by it).
- `registered(service)`: a node service built on a stand-in node, with what it provides put on
  that node's tables by the real `node.provides.register`, as node/compose.py does.
Import them with `from conftest import FakeClock, Commune, doc_vectors, doc_json_blocks`; fixtures need no import.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from trio.testing import MockClock

from meshmeet.membership.identity import KeyPair, commune_id_of
from meshmeet.membership.invite import Invite, make_invite
from meshmeet.membership.roster import Roster, make_claim, make_header, make_seat
from meshmeet.node.provides import Provider, register

MEMBERSHIP_NOW = 1_700_000_000  # the wall time (s) membership fakes are made at


@pytest.fixture
def pty_clock() -> MockClock:
    """MockClock that jumps only after 50 ms of real idleness: pty bytes are in flight in the
    kernel while trio looks idle, and a zero threshold would fire command timeouts early."""
    return MockClock(autojump_threshold=0.05)


class FakeClock:
    """A wall clock that moves only when the test moves it."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Commune:
    """A commune's membership, in memory: the admin key, the header, seats 1 (HQ "UBND xã"), 2 (a
    hall) and 3 (an open relay seat), claims of seats 1 and 2 by the node keys `hq` and `hall`.
    `roster` holds all of it (tests may change it), `new_roster()` builds it afresh, and `invite()`
    makes further seats (4, 5, ...) as invites, without adding them to the roster."""

    def __init__(self) -> None:
        now = MEMBERSHIP_NOW
        self.admin = KeyPair.generate()
        self.cid = commune_id_of(self.admin.public_key)
        self.enrols = {sid: KeyPair.generate() for sid in (1, 2, 3)}
        self.nodes = {sid: KeyPair.generate() for sid in (1, 2)}
        self.hq, self.hall = self.nodes[1], self.nodes[2]
        self.header = make_header(self.admin, "Xã Triệu Sơn", now)
        places = {1: ("UBND xã", "hq"), 2: ("Thôn Xuân Tiên", "hall"), 3: ("Thôn Đông", "relay")}
        self.seats = {sid: make_seat(self.admin, short_id=sid, site=site, role=role,
                                     enrolment_public_key=self.enrols[sid].public_key,
                                     expires_at=now + 3600, issued_at=now)
                      for sid, (site, role) in places.items()}
        self.claims = {sid: make_claim(self.enrols[sid], self.nodes[sid], self.cid, sid) for sid in (1, 2)}
        self.next_sid = 4
        self.roster = self.new_roster()

    def entries(self) -> list:
        return [self.header, *self.seats.values(), *self.claims.values()]

    def new_roster(self) -> Roster:
        r = Roster(self.admin.public_key)
        assert len(r.merge(self.entries())) == len(self.entries())
        return r

    def copy_roster(self) -> Roster:
        """A copy of `roster` as it is now."""
        r = Roster(self.admin.public_key)
        r.merge(self.roster.entries())
        return r

    def invite(self, *, role: str = "hall", expires_at: float = MEMBERSHIP_NOW + 3600) -> Invite:
        enrol = KeyPair.generate()
        seat = make_seat(self.admin, short_id=self.next_sid, site=f"Thôn {self.next_sid}", role=role,
                         enrolment_public_key=enrol.public_key, expires_at=int(expires_at),
                         issued_at=MEMBERSHIP_NOW)
        self.next_sid += 1
        return make_invite(self.admin.public_key, seat, enrol, ["127.0.0.1:7400"])


DOCS = Path(__file__).resolve().parent.parent / "docs"


def registered(service: Provider) -> Provider:
    """`service` (which has a `.node`) with what it provides registered on that node's tables."""
    register(service.node, [service])
    return service


def doc_json_blocks(relative_path: str, tag: str) -> list:
    """The ```json TAG blocks of a document under docs/ (at least one), each parsed."""
    text = (DOCS / relative_path).read_text(encoding="utf-8")
    blocks = re.findall(rf"```json {re.escape(tag)}\n(.*?)```", text, re.S)
    assert blocks, f"no ```json {tag} block in docs/{relative_path}"
    return [json.loads(b) for b in blocks]


def doc_vectors(relative_path: str) -> dict[str, bytes]:
    """The ```vectors block of a document under docs/: `name = hex` lines, as bytes by name."""
    text = (DOCS / relative_path).read_text(encoding="utf-8")
    block = re.search(r"```vectors\n(.*?)```", text, re.S)
    assert block, f"no ```vectors block in docs/{relative_path}"
    vectors = {}
    for line in block.group(1).splitlines():
        match = re.fullmatch(r"\s*(\w+)\s*=\s*([0-9a-f]*)\s*", line)
        assert match, f"unparsable vector line in docs/{relative_path}: {line!r}"
        assert match.group(1) not in vectors, f"vector {match.group(1)} given twice"
        vectors[match.group(1)] = bytes.fromhex(match.group(2))
    return vectors
