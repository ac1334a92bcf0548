"""Roster entries: signing, tamper rejection, union merge (CRDT), races, revocation, gossip."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair, commune_id_of
from meshmeet.membership.roster import (
    GOSSIP_CHUNK_BYTES,
    Claim,
    Roster,
    RosterError,
    RosterGossip,
    Seat,
    decode_entry,
    make_claim,
    make_header,
    make_revocation,
    make_seat,
)

from conftest import Commune

NOW = 1_700_000_000


def seat_for(admin: KeyPair, sid: int, enrol: KeyPair, *, site: str = "Thôn Xuân Tiên", role: str = "hall") -> Seat:
    return make_seat(
        admin, short_id=sid, site=site, role=role, enrolment_public_key=enrol.public_key,
        expires_at=NOW + 3600, issued_at=NOW,
    )


C = Commune()  # module-level: key generation once; tests never mutate it


def test_every_entry_type_validates_and_defines_members() -> None:
    r = C.new_roster()
    rev = make_revocation(C.admin, 3, NOW)
    assert r.add(rev) is True
    assert r.add(rev) is False  # idempotent
    assert r.commune_name == "Xã Triệu Sơn"
    members = r.members()
    assert [(m.short_id, m.role, m.site) for m in members] == [(1, "hq", "UBND xã"), (2, "hall", "Thôn Xuân Tiên")]
    hq = r.member_by_short_id(1)
    assert hq is not None and hq.public_key == C.nodes[1].public_key and hq.priority == 100 and hq.backup
    assert r.member_by_node_id(C.nodes[2].node_id).short_id == 2
    assert r.is_member(C.nodes[2].public_key)
    assert not r.is_member(C.enrols[2].public_key)
    assert r.open_seats() == []  # seat 3 revoked
    assert r.next_short_id() == 4


def entry_raws() -> list[bytes]:
    return [e.raw for e in C.entries()] + [make_revocation(C.admin, 3, NOW).raw]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(entry_raws()), st.data())
def test_any_byte_mutation_never_validates(raw: bytes, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    mutated = bytearray(raw)
    mutated[pos] ^= flip
    r = Roster(C.admin.public_key)
    r.merge([C.seats[1], C.seats[2], C.seats[3]])
    before = r.digest()
    try:
        r.add(bytes(mutated))
    except RosterError:
        pass
    assert r.digest() == before, "a mutated entry was accepted"
    assert r.members() == []


JUNK_GOSSIP = RosterGossip(C.new_roster())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_hostile_bytes_give_roster_error_only(junk: bytes) -> None:
    with pytest.raises(RosterError):
        Roster(C.admin.public_key).add(junk)
    with pytest.raises(RosterError):
        Roster.from_bytes(junk)
    gossip = JUNK_GOSSIP
    before = gossip.roster.digest()
    for body in (junk, b"\x92\x01" + junk, b"\x92\x02" + junk):
        try:
            result = gossip.receive(body)
        except RosterError:
            continue
        assert result.new_entries == ()  # junk never adds anything
    assert gossip.roster.digest() == before


def test_foreign_entries_are_refused() -> None:
    other = Commune()
    r = Roster(C.admin.public_key)
    for e in other.entries():
        with pytest.raises(RosterError):
            r.add(e)
    # same commune id, wrong signer: a seat signed by another key
    fake = make_seat(other.admin, short_id=9, site="x", role="hall", enrolment_public_key=C.enrols[3].public_key,
                     expires_at=NOW, issued_at=NOW)
    forged = msgpack.packb([2, msgpack.packb([C.cid, *msgpack.unpackb(msgpack.unpackb(fake.raw)[1])[1:]]),
                            fake.signature])
    with pytest.raises(RosterError, match="signature"):
        r.add(forged)


def test_claim_before_seat_waits_then_counts() -> None:
    r = Roster(C.admin.public_key)
    assert r.add(C.claims[2]) is False
    assert r.pending_claims() == [C.claims[2]] and r.members() == []
    new = r.merge([C.seats[2]])
    assert set(new) == {C.seats[2], C.claims[2]}
    assert r.member_by_short_id(2).public_key == C.nodes[2].public_key
    assert r.pending_claims() == []


def test_claim_signed_by_wrong_enrolment_key_never_counts() -> None:
    r = Roster(C.admin.public_key)
    r.add(C.seats[3])
    bad = make_claim(KeyPair.generate(), KeyPair.generate(), C.cid, 3)
    assert r.add(bad) is False
    assert r.members() == [] and [s.short_id for s in r.open_seats()] == [3]


def test_claim_race_smallest_signature_wins_everywhere() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    ca, cb = (make_claim(C.enrols[3], k, C.cid, 3) for k in (a, b))
    winner = min((ca, cb), key=lambda c: c.enrolment_signature)
    r1, r2 = Roster(C.admin.public_key), Roster(C.admin.public_key)
    r1.merge([C.seats[3], ca, cb])
    r2.merge([cb, C.seats[3], ca])
    assert r1.member_by_short_id(3).public_key == winner.node_public_key
    assert r2.member_by_short_id(3).public_key == winner.node_public_key
    assert r1.digest() == r2.digest()


def test_open_seats_respect_expiry_and_claims() -> None:
    r = C.new_roster()
    assert [s.short_id for s in r.open_seats()] == [3]
    assert [s.short_id for s in r.open_seats(now=NOW + 10)] == [3]
    assert r.open_seats(now=NOW + 3600) == []


def test_storage_round_trip() -> None:
    r = C.new_roster()
    r.add(make_revocation(C.admin, 3, NOW))
    again = Roster.from_bytes(r.to_bytes())
    assert again.digest() == r.digest() and again.members() == r.members()
    assert Roster.from_entries_bytes(C.admin.public_key, r.entries_bytes()).digest() == r.digest()
    with pytest.raises(RosterError):
        Roster.from_entries_bytes(KeyPair.generate().public_key, r.entries_bytes())


def _pool() -> list:
    """Entries including conflicts: two seats on id 4, two claims on seat 3, a revocation, 2 headers."""
    extra_enrol = KeyPair.generate()
    return [
        *C.entries(),
        make_header(C.admin, "Xã Triệu Sơn (mới)", NOW + 5),
        seat_for(C.admin, 4, extra_enrol),
        seat_for(C.admin, 4, KeyPair.generate(), site="Thôn Tây"),
        make_claim(extra_enrol, KeyPair.generate(), C.cid, 4),
        make_claim(C.enrols[3], KeyPair.generate(), C.cid, 3),
        make_claim(C.enrols[3], KeyPair.generate(), C.cid, 3),
        make_revocation(C.admin, 2, NOW),
    ]


POOL = _pool()


def _view(r: Roster) -> tuple:
    return r.digest(), r.members(), r.open_seats(), r.commune_name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(POOL)), st.lists(st.sampled_from(POOL)), st.randoms(use_true_random=False))
def test_merge_is_commutative_and_idempotent(a: list, b: list, rnd: random.Random) -> None:
    ab, ba = Roster(C.admin.public_key), Roster(C.admin.public_key)
    ab.merge(a)
    ab.merge(b)
    shuffled = list(a + b)
    rnd.shuffle(shuffled)
    ba.merge(b)
    ba.merge(shuffled)
    assert _view(ab) == _view(ba)
    assert ab.merge(a + b) == []  # idempotent
    assert _view(ab) == _view(ba)


def test_gossip_converges_both_ways_and_stops() -> None:
    left, right = Roster(C.admin.public_key), Roster(C.admin.public_key)
    left.merge(POOL[:5])
    right.merge(POOL[4:])
    gl, gr = RosterGossip(left), RosterGossip(right)
    to_right, to_left = [gl.link_up()], [gr.link_up()]
    rounds = 0
    while to_right or to_left:
        rounds += 1
        assert rounds < 5, "gossip did not stop"
        next_left = [b for body in to_right for b in gr.receive(body).replies]
        next_right = [b for body in to_left for b in gl.receive(body).replies]
        to_left, to_right = next_left, next_right
    assert left.digest() == right.digest()
    union = Roster(C.admin.public_key)
    union.merge(POOL)
    assert left.digest() == union.digest()
    # equal rosters: a HAVE gets no reply
    assert gl.receive(gr.link_up()).replies == ()


def test_gossip_chunks_large_rosters() -> None:
    r = Roster(C.admin.public_key)
    seats = [seat_for(C.admin, sid, KeyPair.generate(), site=f"Thôn {sid:04d} " + "x" * 60) for sid in range(1, 400)]
    r.merge(seats)
    bodies = RosterGossip(r).announce(r.entries())
    assert len(bodies) > 1 and all(len(b) <= GOSSIP_CHUNK_BYTES + 600 for b in bodies)
    other = Roster(C.admin.public_key)
    g = RosterGossip(other)
    got = [e for body in bodies for e in g.receive(body).new_entries]
    assert len(got) == len(seats) and other.digest() == r.digest()


def test_decode_entry_round_trips_fields() -> None:
    s = decode_entry(C.seats[2].raw)
    assert s == C.seats[2]
    c = decode_entry(C.claims[2].raw)
    assert isinstance(c, Claim) and c.node_public_key == C.nodes[2].public_key


def test_make_seat_refuses_unknown_role_and_long_names() -> None:
    with pytest.raises(RosterError):
        make_seat(C.admin, short_id=5, site="x", role="boss", enrolment_public_key=bytes(32), expires_at=1, issued_at=1)
    with pytest.raises(RosterError):
        make_seat(C.admin, short_id=5, site="x" * 200, role="hall", enrolment_public_key=bytes(32), expires_at=1,
                  issued_at=1)


def test_vectors_in_the_protocol_doc_are_true() -> None:
    """docs/protocol/membership.md section 6: the entry bytes, digest and invite code."""
    from pathlib import Path

    from meshmeet.membership.invite import decode_invite, encode_invite, make_invite

    doc = "".join((Path(__file__).parent.parent / "docs/protocol/membership.md").read_text().split())
    admin, enrol, node = (KeyPair.from_seed(bytes([i]) * 32) for i in (1, 2, 3))
    cid = commune_id_of(admin.public_key)
    header = make_header(admin, "Xã Triệu Sơn", 1700000000)
    seat = make_seat(admin, short_id=2, site="Thôn Xuân Tiên", role="hall", enrolment_public_key=enrol.public_key,
                     expires_at=1700604800, issued_at=1700000000)
    claim = make_claim(enrol, node, cid, 2)
    r = Roster(admin.public_key)
    r.merge([header, seat, claim])
    code = encode_invite(make_invite(admin.public_key, seat, enrol, ["192.168.1.10:7400"]))
    for value in (admin.public_key.hex(), cid.hex(), header.raw.hex(), seat.raw.hex(), claim.raw.hex(),
                  r.digest().hex(), code):
        assert value in doc
    assert decode_invite(code).seat == seat
