"""The join exchange, sans-IO: JoinClient and JoinServer driven against each other in memory."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.membership.invite import Invite, make_invite
from meshmeet.membership.join import (
    JOIN_TIMEOUT_S,
    JoinAccepted,
    JoinClient,
    JoinCode,
    Joined,
    JoinRefused,
    JoinServer,
    is_join_start,
)
from meshmeet.membership.roster import RosterGossip, make_claim, make_revocation, make_seat

from conftest import Commune

NOW = 1_700_000_000.0


def run(client: JoinClient, server: JoinServer, now: float = NOW, chunk: int = 0):
    """Move bytes both ways (optionally in small pieces); return (client outcome, server outcome)."""
    req = client.data_to_send()
    assert is_join_start(req)
    pieces = [req[i:i + chunk] for i in range(0, len(req), chunk)] if chunk else [req]
    s_out = None
    for p in pieces:
        s_out = server.receive_data(p, now)
    reply = server.data_to_send()
    c_out = None
    for p in ([reply[i:i + chunk] for i in range(0, len(reply), chunk)] if chunk else [reply]):
        c_out = client.receive_data(p, now)
    return c_out, s_out


def new_client(invite: Invite, key: KeyPair | None = None, now: float = NOW) -> JoinClient:
    return JoinClient(invite, key or KeyPair.generate(), os.urandom(16), now)


def test_join_through_hq_then_second_use_refused_and_same_key_idempotent() -> None:
    c = Commune()
    inv = c.invite()
    hall = KeyPair.generate()
    client = new_client(inv, hall)
    got, srv = run(client, JoinServer(c.roster, c.hq, NOW, NOW), chunk=7)
    assert isinstance(srv, JoinAccepted) and srv.new and srv.short_id == inv.short_id
    assert {e.raw for e in srv.new_entries} == {inv.seat.raw, client.claim.raw}
    assert isinstance(got, Joined)
    assert got.member.public_key == hall.public_key and got.member.site == inv.seat.site
    assert got.responder.public_key == c.hq.public_key
    assert got.roster.digest() == c.roster.digest()
    # another key with the same invite: refused, roster unchanged
    before = c.roster.digest()
    got2, srv2 = run(new_client(inv), JoinServer(c.roster, c.hq, NOW, NOW))
    assert isinstance(srv2, JoinRefused) and srv2.code == JoinCode.ALREADY_CLAIMED
    assert isinstance(got2, JoinRefused) and got2.code == JoinCode.ALREADY_CLAIMED and "already used" in got2.en
    assert c.roster.digest() == before
    # the same key again (a retry after a lost answer): accepted, nothing new
    got3, srv3 = run(new_client(inv, hall), JoinServer(c.roster, c.hall, NOW + 7200, NOW + 7200))
    assert isinstance(srv3, JoinAccepted) and not srv3.new
    assert isinstance(got3, Joined) and got3.responder.short_id == 2


def test_join_through_a_member_that_never_saw_the_seat() -> None:
    """HQ offline: the invite carries the admin-signed seat, so any member can take the claim."""
    c = Commune()
    inv = c.invite()  # the hall's roster has never heard of this seat
    assert c.roster.seat(inv.short_id) is None
    got, srv = run(new_client(inv), JoinServer(c.roster, c.hall, NOW, NOW))
    assert isinstance(srv, JoinAccepted) and isinstance(got, Joined)
    assert got.responder.role == "hall"


@pytest.mark.parametrize(
    "case, code",
    [
        ("expired", JoinCode.EXPIRED),
        ("foreign", JoinCode.FOREIGN_COMMUNE),
        ("unknown_seat", JoinCode.UNKNOWN_SEAT),
        ("revoked", JoinCode.REVOKED),
        ("bad_claim", JoinCode.BAD_CLAIM),
        ("seat_lost", JoinCode.UNKNOWN_SEAT),
    ],
)
def test_refusals(case: str, code: JoinCode) -> None:
    c = Commune()
    inv = c.invite(expires_at=NOW + 10)
    client = new_client(inv)
    now = NOW
    if case == "expired":
        now = NOW + 10  # the member's clock says the seat expired
    elif case == "foreign":
        client = new_client(Commune().invite())
    elif case == "unknown_seat":
        # a seat with this commune's id but not signed by its admin
        imp = KeyPair.generate()
        seat = make_seat(imp, short_id=40, site="x", role="hall", enrolment_public_key=imp.public_key,
                         expires_at=int(NOW + 99), issued_at=int(NOW))
        forged = type(seat)(**{**seat.__dict__, "commune_id": c.cid})
        client = new_client(Invite(c.admin.public_key, forged, bytes(imp.signing_key), ("h:1",)))
        import msgpack
        body = msgpack.unpackb(seat.raw)[1]
        fields = msgpack.unpackb(body)
        fields[0] = c.cid
        raw = msgpack.packb([2, msgpack.packb(fields), seat.signature])
        client._out = bytearray(client._out.replace(seat.raw, raw))  # noqa: SLF001 (hostile client)
        client._out[1:5] = (len(client._out) - 5).to_bytes(4, "big")
    elif case == "revoked":
        c.roster.add(make_revocation(c.admin, inv.short_id, int(NOW)))
    elif case == "bad_claim":
        client.claim = make_claim(KeyPair.generate(), client.node_key, c.cid, inv.short_id)
        client._out = bytearray(JoinClient(inv, client.node_key, client.nonce, NOW).data_to_send())
        client._out = client._out.replace(
            make_claim(inv.enrolment_key(), client.node_key, c.cid, inv.short_id).raw, client.claim.raw)
    elif case == "seat_lost":
        # the admin (by mistake) issued two seats on one short id; the other one wins
        other = c.invite()
        twin = make_seat(c.admin, short_id=inv.short_id, site="Thôn B", role="hall",
                         enrolment_public_key=other.seat.enrolment_public_key, expires_at=int(NOW + 99),
                         issued_at=int(NOW))
        if twin.signature > inv.seat.signature:
            inv, twin = (make_invite(c.admin.public_key, twin, other.enrolment_key(), ["h:1"]), inv.seat)
            client = new_client(inv)
        c.roster.add(twin)
    before = c.roster.digest()
    got, srv = run(client, JoinServer(c.roster, c.hq, now, now), now=now)
    assert isinstance(srv, JoinRefused) and srv.code == code, srv
    assert isinstance(got, JoinRefused) and got.code == code
    assert got.vi and got.en
    assert c.roster.member_by_public_key(client.node_key.public_key) is None
    if case in ("expired", "bad_claim"):
        assert c.roster.claim(inv.short_id) is None
    if case == "foreign":
        assert c.roster.digest() == before


COMMUNE = Commune()
COMMUNE_DIGEST = COMMUNE.roster.digest()


def _good_answer() -> tuple:
    inv, key, nonce = COMMUNE.invite(), KeyPair.generate(), os.urandom(16)
    server = JoinServer(COMMUNE.copy_roster(), COMMUNE.hq, NOW, NOW)
    server.receive_data(JoinClient(inv, key, nonce, NOW).data_to_send(), NOW)
    reply = server.data_to_send()
    assert isinstance(JoinClient(inv, key, nonce, NOW).receive_data(reply, NOW), Joined)
    return inv, key, nonce, reply


GOOD_ANSWER = _good_answer()


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_hostile_bytes_to_server_give_a_refusal(junk: bytes, chunk: int) -> None:
    c = COMMUNE
    server = JoinServer(c.roster, c.hq, NOW, NOW)
    out = None
    for i in range(0, len(junk), chunk):
        out = server.receive_data(junk[i:i + chunk], NOW)
        if out is not None:
            break
    if out is None:
        out = server.receive_data(b"", NOW)  # end of stream
    assert isinstance(out, JoinRefused)
    reply = server.data_to_send()
    assert reply == b"" or is_join_start(reply)
    assert c.roster.digest() == COMMUNE_DIGEST


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_framed_bodies_to_server_give_a_refusal(body: bytes) -> None:
    server = JoinServer(COMMUNE.roster, COMMUNE.hq, NOW, NOW)
    out = server.receive_data(b"J" + len(body).to_bytes(4, "big") + body, NOW)
    assert isinstance(out, JoinRefused) and out.code == JoinCode.MALFORMED


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_tampered_or_hostile_answers_give_a_refusal(data: st.DataObject) -> None:
    inv, key, nonce, good_reply = GOOD_ANSWER
    client = JoinClient(inv, key, nonce, NOW)
    client.data_to_send()
    reply = bytearray(good_reply)
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(reply) - 1))
        reply[pos] ^= data.draw(st.integers(1, 255))
    else:
        reply = bytearray(data.draw(st.binary(max_size=200)))
    out = client.receive_data(bytes(reply), NOW) or client.receive_data(b"", NOW)
    assert isinstance(out, JoinRefused)




def test_answer_from_a_stranger_or_for_another_nonce_is_refused() -> None:
    c = Commune()
    inv = c.invite()
    stranger = KeyPair.generate()
    got, _ = run(new_client(inv), JoinServer(c.copy_roster(), stranger, NOW, NOW))
    assert isinstance(got, JoinRefused) and got.code == JoinCode.BAD_RESPONSE
    client = new_client(inv)
    server = JoinServer(c.copy_roster(), c.hq, NOW, NOW)
    req = bytearray(client.data_to_send())
    req[-1] ^= 1  # the server answers another nonce
    server.receive_data(bytes(req), NOW)
    out = client.receive_data(server.data_to_send(), NOW)
    assert isinstance(out, JoinRefused) and out.code == JoinCode.BAD_RESPONSE


def test_timeouts_are_outcomes() -> None:
    c = Commune()
    server = JoinServer(c.roster, c.hq, NOW, NOW)
    assert server.deadline == NOW + JOIN_TIMEOUT_S
    assert server.receive_data(b"J\x00", NOW + 1) is None
    assert server.timeout(server.deadline).code == JoinCode.TIMEOUT
    assert server.data_to_send() == b""
    client = new_client(c.invite())
    assert client.receive_data(b"J", client.deadline).code == JoinCode.TIMEOUT


def test_race_between_two_members_resolves_by_gossip() -> None:
    """Two members accept the same invite for different keys; after gossip one winner everywhere."""
    c = Commune()
    inv = c.invite()
    at_hq, at_hall = c.copy_roster(), c.copy_roster()
    k1, k2 = KeyPair.generate(), KeyPair.generate()
    a, _ = run(new_client(inv, k1), JoinServer(at_hq, c.hq, NOW, NOW))
    b, _ = run(new_client(inv, k2), JoinServer(at_hall, c.hall, NOW, NOW))
    assert isinstance(a, Joined) and isinstance(b, Joined)
    g1, g2 = RosterGossip(at_hq), RosterGossip(at_hall)
    for body in g2.receive(g1.link_up()).replies:
        g1.receive(body)
    for body in g1.receive(g2.link_up()).replies:
        g2.receive(body)
    assert at_hq.digest() == at_hall.digest()
    winner = min((make_claim(inv.enrolment_key(), k, c.cid, inv.short_id) for k in (k1, k2)),
                 key=lambda cl: cl.enrolment_signature)
    assert at_hq.member_by_short_id(inv.short_id).public_key == winner.node_public_key
    assert at_hall.member_by_short_id(inv.short_id).public_key == winner.node_public_key
