"""The link handshake between two in-memory connections: success, sizes, and every refusal."""

from __future__ import annotations

import pytest

from meshmeet.wire import (
    FRAME_OVERHEAD_BYTES,
    SETUP_BYTES,
    CloseCode,
    ConnectionClosed,
    HandshakeComplete,
    MessageReceived,
    Role,
    State,
)
from meshmeet.wire.handshake import MSG1_BYTES, MSG2_BYTES, MSG3_BYTES
from meshmeet.wire.testing import TEST_COMMUNE_ID, TestRoster, make_connection, pump

I, R = 1, 2


def roster_of(*ids: int) -> TestRoster:
    roster = TestRoster()
    for short_id in ids:
        roster.add(short_id)
    return roster


def closed(events: list) -> ConnectionClosed:
    assert events and isinstance(events[-1], ConnectionClosed), events
    return events[-1]


def test_full_handshake_is_symmetric_and_costs_199_bytes_in_1_5_round_trips() -> None:
    roster = roster_of(I, R)
    a = make_connection(roster, I, Role.INITIATOR)
    b = make_connection(roster, R, Role.RESPONDER)
    a.start(0.0)
    flights = []
    msg1 = a.data_to_send()
    flights.append(msg1)
    assert b.receive_data(msg1, 0.0) == []
    msg2 = b.data_to_send()
    flights.append(msg2)
    events_a = a.receive_data(msg2, 0.0)
    assert events_a == [HandshakeComplete(R, roster.lookup(R), roster.members[R].node_id)]
    # The initiator may send data in the same flight as msg3: 1.5 round trips in all.
    a.send_message(b"\x20first", 0.0)
    flight3 = a.data_to_send()
    msg3 = flight3[:MSG3_BYTES]
    flights.append(msg3)
    assert [len(f) for f in flights] == [MSG1_BYTES, MSG2_BYTES, MSG3_BYTES] == [37, 98, 64]
    assert sum(len(f) for f in flights) == SETUP_BYTES == 199 < 200
    events_b = b.receive_data(flight3, 0.0)
    assert events_b == [
        HandshakeComplete(I, roster.lookup(I), roster.members[I].node_id),
        MessageReceived(b"\x20first"),
    ]
    assert len(flight3) - MSG3_BYTES == len(b"\x20first") + FRAME_OVERHEAD_BYTES
    assert FRAME_OVERHEAD_BYTES == 19 <= 21
    # Both sides derived matching keys in opposite directions, and matching peers.
    assert a._sealer._key == b._opener._key and a._opener._key == b._sealer._key
    assert a._sealer._key != a._opener._key
    assert a.peer.short_id == R and b.peer.short_id == I
    assert a.peer.public_key == roster.lookup(R) and b.peer.public_key == roster.lookup(I)
    assert a.bytes_sent == b.bytes_received and b.bytes_sent == a.bytes_received
    assert a.state is b.state is State.ESTABLISHED


def test_every_link_gets_fresh_keys() -> None:
    roster = roster_of(I, R)
    keys = set()
    for _ in range(3):
        a, b = make_connection(roster, I, Role.INITIATOR), make_connection(roster, R, Role.RESPONDER)
        a.start(0.0)
        pump(a, b, 0.0)
        keys.add(a._sealer._key)
    assert len(keys) == 3


def handshake_with_tamper(message_index: int, byte_index: int, bit: int) -> tuple[list, list]:
    """Run a handshake where a man in the middle flips one bit of msg1, msg2 or msg3."""
    roster = roster_of(I, R, 3)
    a, b = make_connection(roster, I, Role.INITIATOR), make_connection(roster, R, Role.RESPONDER)
    a.start(0.0)
    events_a: list = []
    events_b: list = []
    for index in range(3):
        sender, receiver, sink = (a, b, events_b) if index != 1 else (b, a, events_a)
        data = bytearray(sender.data_to_send())
        if not data:
            break
        if index == message_index:
            data[byte_index] ^= 1 << bit
        sink += receiver.receive_data(bytes(data), 0.0)
    return events_a, events_b


@pytest.mark.parametrize(
    "message_index,size", [(0, MSG1_BYTES), (1, MSG2_BYTES), (2, MSG3_BYTES)], ids=["msg1", "msg2", "msg3"]
)
def test_tampering_any_byte_is_refused(message_index: int, size: int) -> None:
    for byte_index in range(size):
        bit = byte_index % 8
        events_a, events_b = handshake_with_tamper(message_index, byte_index, bit)
        # The responder never accepts a tampered handshake...
        assert not any(isinstance(e, HandshakeComplete) for e in events_b), (message_index, byte_index)
        # ...someone refuses it with an error...
        refusals = [e for e in events_a + events_b if isinstance(e, ConnectionClosed)]
        assert refusals and all(e.error for e in refusals), (message_index, byte_index)
        # ...and the initiator accepts only when msg1 and msg2 were intact (it cannot see msg3).
        initiator_done = any(isinstance(e, HandshakeComplete) for e in events_a)
        assert initiator_done == (message_index == 2)


def test_tampered_signature_bytes_give_bad_signature() -> None:
    events_a, _ = handshake_with_tamper(1, 50, 0)
    assert closed(events_a).reason == "bad signature"
    _, events_b = handshake_with_tamper(2, 10, 3)
    assert closed(events_b).reason == "bad signature" and closed(events_b).code == CloseCode.BAD_SIGNATURE
    events_a, _ = handshake_with_tamper(0, 20, 1)  # I's ephemeral changed: R signed the wrong msg1
    assert closed(events_a).reason == "bad signature"


def test_replayed_msg1_and_msg3_to_a_new_responder_are_refused() -> None:
    roster = roster_of(I, R)
    a, b = make_connection(roster, I, Role.INITIATOR), make_connection(roster, R, Role.RESPONDER)
    a.start(0.0)
    msg1 = a.data_to_send()
    b.receive_data(msg1, 0.0)
    a.receive_data(b.data_to_send(), 0.0)
    msg3 = a.data_to_send()
    assert isinstance(b.receive_data(msg3, 0.0)[0], HandshakeComplete)

    fresh = make_connection(roster, R, Role.RESPONDER)
    assert fresh.receive_data(msg1, 1.0) == []  # it cannot tell yet: it answers with a new msg2
    assert len(fresh.data_to_send()) == MSG2_BYTES
    event = closed(fresh.receive_data(msg3, 1.0))
    assert (event.reason, event.code, event.error, event.by_peer) == ("bad signature", CloseCode.BAD_SIGNATURE, True, False)
    assert fresh.state is State.CLOSED and fresh.peer is None
    assert fresh.data_to_send() == b""  # nothing is sent before the transport exists

    # A replayed msg1 alone gets a fresh msg2 nobody can answer, and then times out.
    lonely = make_connection(roster, R, Role.RESPONDER, now=2.0)
    assert lonely.receive_data(msg1, 2.0) == []
    assert lonely.next_deadline() == 12.0
    event = closed(lonely.handle_timer(12.0))
    assert (event.code, event.error) == (CloseCode.HANDSHAKE_TIMEOUT, True) and lonely.peer is None


def test_foreign_commune_is_refused() -> None:
    roster = roster_of(I, R)
    other = bytes(16)
    a = make_connection(roster, I, Role.INITIATOR, commune_id=other)
    b = make_connection(roster, R, Role.RESPONDER)
    a.start(0.0)
    event = closed(b.receive_data(a.data_to_send(), 0.0))
    assert (event.reason, event.code, event.error) == ("different commune", CloseCode.DIFFERENT_COMMUNE, True)
    assert b.data_to_send() == b""


def test_same_commune_tag_but_other_commune_fails_the_signature() -> None:
    roster = roster_of(I, R)
    twin = TEST_COMMUNE_ID[:2] + bytes(14)
    a = make_connection(roster, I, Role.INITIATOR, commune_id=twin)
    b = make_connection(roster, R, Role.RESPONDER)
    a.start(0.0)
    events_a, events_b = pump(a, b, 0.0)
    assert closed(events_a).reason == "bad signature"
    assert not any(isinstance(e, HandshakeComplete) for e in events_b)


def test_unknown_short_id_is_refused_by_the_responder() -> None:
    roster = roster_of(I, R)
    stranger = roster_of(7)
    a = make_connection(stranger, 7, Role.INITIATOR)
    b = make_connection(roster, R, Role.RESPONDER)
    a.start(0.0)
    event = closed(b.receive_data(a.data_to_send(), 0.0))
    assert (event.reason, event.code) == ("not on roster", CloseCode.NOT_ON_ROSTER)


def test_responder_not_on_initiators_roster_is_refused() -> None:
    full = roster_of(I, R)
    without_r = TestRoster({I: full.members[I]})
    a = make_connection(without_r, I, Role.INITIATOR)
    b = make_connection(full, R, Role.RESPONDER)
    a.start(0.0)
    events_a, events_b = pump(a, b, 0.0)
    assert (closed(events_a).reason, closed(events_a).code) == ("not on roster", CloseCode.NOT_ON_ROSTER)
    assert events_b == []  # the responder just sees silence (then EOF from the driver)
    assert closed(b.receive_data(b"", 1.0)).reason == "connection lost during handshake"


def test_key_substitution_is_refused() -> None:
    """A node signing as a short id whose roster key is someone else's."""
    roster = roster_of(I, R)
    impostor = TestRoster({I: roster.members[I], R: roster_of(9).members[9]})  # R's seat, wrong key
    a = make_connection(roster, I, Role.INITIATOR)
    b = make_connection(impostor, R, Role.RESPONDER)
    a.start(0.0)
    events_a, _ = pump(a, b, 0.0)
    assert closed(events_a).reason == "bad signature"


def test_version_mismatch_is_refused() -> None:
    roster = roster_of(I, R)
    a, b = make_connection(roster, I, Role.INITIATOR), make_connection(roster, R, Role.RESPONDER)
    a.start(0.0)
    msg1 = bytearray(a.data_to_send())
    msg1[0] = 0x02
    event = closed(b.receive_data(bytes(msg1), 0.0))
    assert (event.reason, event.code) == ("unsupported version", CloseCode.UNSUPPORTED_VERSION)


def test_link_to_self_and_unexpected_peer_are_refused() -> None:
    roster = roster_of(I, R)
    a, b = make_connection(roster, I, Role.INITIATOR), make_connection(roster, I, Role.RESPONDER)
    a.start(0.0)
    event = closed(b.receive_data(a.data_to_send(), 0.0))
    assert (event.reason, event.code) == ("link to self", CloseCode.UNEXPECTED_PEER)

    a = make_connection(roster, I, Role.INITIATOR, expected_peer=5)
    b = make_connection(roster, R, Role.RESPONDER)
    a.start(0.0)
    events_a, _ = pump(a, b, 0.0)
    assert (closed(events_a).reason, closed(events_a).code) == ("unexpected peer", CloseCode.UNEXPECTED_PEER)


def test_low_order_ephemeral_key_is_refused() -> None:
    roster = roster_of(I, R)
    b = make_connection(roster, R, Role.RESPONDER)
    msg1 = b"\x01" + TEST_COMMUNE_ID[:2] + I.to_bytes(2, "big") + bytes(32)
    event = closed(b.receive_data(msg1, 0.0))
    assert (event.reason, event.code) == ("bad ephemeral key", CloseCode.BAD_KEY)


def test_handshake_in_single_byte_pieces() -> None:
    roster = roster_of(I, R)
    a, b = make_connection(roster, I, Role.INITIATOR), make_connection(roster, R, Role.RESPONDER)
    a.start(0.0)
    done = []
    for _ in range(3):
        for sender, receiver in ((a, b), (b, a)):
            for byte in sender.data_to_send():
                done += receiver.receive_data(bytes((byte,)), 0.0)
    assert sum(isinstance(e, HandshakeComplete) for e in done) == 2


def test_handshake_timeout_and_eof_during_handshake() -> None:
    roster = roster_of(I, R)
    a = make_connection(roster, I, Role.INITIATOR, now=100.0, handshake_timeout_s=10.0)
    a.start(100.0)
    assert a.next_deadline() == 110.0
    assert a.handle_timer(109.9) == []
    event = closed(a.handle_timer(110.0))
    assert (event.code, event.error, event.by_peer) == (CloseCode.HANDSHAKE_TIMEOUT, True, False)
    assert a.next_deadline() is None and a.handle_timer(200.0) == []

    b = make_connection(roster, R, Role.RESPONDER)
    b.receive_data(b"\x01\xa0", 0.0)
    event = closed(b.receive_data(b"", 0.5))
    assert (event.code, event.by_peer, event.error) == (CloseCode.CONNECTION_LOST, True, True)
    assert b.receive_data(b"more", 1.0) == []
