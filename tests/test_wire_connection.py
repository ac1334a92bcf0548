"""An established link: messages, keepalive and dead timers on a fake clock, RTT, and close."""

from __future__ import annotations

import pytest

from meshmeet.errors import MeshmeetError
from meshmeet.wire import (
    FRAME_OVERHEAD_BYTES,
    MAX_MESSAGE_BYTES,
    CloseCode,
    ConnectionClosed,
    LinkStateError,
    MessageReceived,
    Role,
    RttSample,
    State,
    operator_error,
)
from meshmeet.wire.testing import TestRoster, connected_pair, make_connection, pump


def test_messages_flow_both_ways_with_19_bytes_of_overhead() -> None:
    a, b = connected_pair()
    sent_before = a.bytes_sent
    for n in range(5):
        assert a.send_message(b"\x20" + bytes([n]) * n, 1.0)
    wire = a.data_to_send()
    assert len(wire) == sum(1 + n + FRAME_OVERHEAD_BYTES for n in range(5))
    assert a.bytes_sent - sent_before == len(wire)
    assert b.receive_data(wire, 1.0) == [MessageReceived(b"\x20" + bytes([n]) * n) for n in range(5)]
    b.send_message(b"\x10reply", 1.0)
    assert a.receive_data(b.data_to_send(), 1.0) == [MessageReceived(b"\x10reply")]
    assert (a.messages_sent, b.messages_received, b.messages_sent, a.messages_received) == (5, 5, 1, 1)
    assert b.send_message(b"", 1.0)  # an empty message is still a message
    assert a.receive_data(b.data_to_send(), 1.0) == [MessageReceived(b"")]


def test_send_limits_and_states() -> None:
    roster = TestRoster()
    roster.add(1), roster.add(2)
    a = make_connection(roster, 1, Role.INITIATOR)
    with pytest.raises(LinkStateError):
        a.send_message(b"too early", 0.0)
    a.start(0.0)
    with pytest.raises(LinkStateError):
        a.start(0.0)
    b = make_connection(roster, 2, Role.RESPONDER)
    pump(a, b, 0.0)
    assert a.send_message(b"x" * MAX_MESSAGE_BYTES, 0.0)
    with pytest.raises(ValueError):
        a.send_message(b"x" * (MAX_MESSAGE_BYTES + 1), 0.0)
    assert [type(e) for e in b.receive_data(a.data_to_send(), 0.0)] == [MessageReceived]
    a.close("bye", 0.0)
    assert a.send_message(b"late", 0.0) is False
    assert a.close("again", 0.0) == []


def test_keepalive_ping_gives_rtt_on_a_fake_clock() -> None:
    a, b = connected_pair(keepalive_s=5.0)
    assert a.next_deadline() == 5.0 and b.next_deadline() == 5.0
    assert a.handle_timer(4.9) == [] and a.data_to_send() == b""
    assert a.handle_timer(5.0) == []
    ping = a.data_to_send()
    assert len(ping) == 4 + FRAME_OVERHEAD_BYTES
    assert a.next_deadline() == 15.0  # ping outstanding: only the dead timer remains
    assert b.receive_data(ping, 5.25) == []
    pong = b.data_to_send()
    events = a.receive_data(pong, 5.5)
    assert events == [RttSample(rtt_s=0.5, smoothed_rtt_s=0.5)]
    assert a.rtt_s == 0.5 and a.next_deadline() == 10.0
    a.handle_timer(10.0)
    b.receive_data(a.data_to_send(), 10.0)
    (sample,) = a.receive_data(b.data_to_send(), 10.1)
    assert sample.rtt_s == pytest.approx(0.1)
    assert sample.smoothed_rtt_s == pytest.approx(0.5 + (0.1 - 0.5) / 8)
    # A pong that answers no outstanding ping is ignored.
    b._send_frame(2, (999).to_bytes(4, "big"))
    assert a.receive_data(b.data_to_send(), 10.2) == []


def test_link_stays_up_while_both_sides_run_their_timers() -> None:
    a, b = connected_pair(keepalive_s=5.0)
    now = 0.0
    samples = 0
    while now < 120.0:
        now += 1.0
        for conn in (a, b):
            if conn.next_deadline() is not None and now >= conn.next_deadline():
                samples += sum(isinstance(e, RttSample) for e in conn.handle_timer(now))
        events_a, events_b = pump(a, b, now)
        samples += sum(isinstance(e, RttSample) for e in events_a + events_b)
        assert not any(isinstance(e, ConnectionClosed) for e in events_a + events_b)
    assert a.state is b.state is State.ESTABLISHED
    assert samples >= 2 * (120 // 5) - 2


def test_a_silent_peer_is_declared_dead_after_three_keepalives() -> None:
    a, b = connected_pair(keepalive_s=2.0)
    a.handle_timer(2.0)
    ping = a.data_to_send()  # never delivered: the peer has gone silent
    assert a.next_deadline() == 6.0
    assert a.handle_timer(5.9) == []
    (event,) = a.handle_timer(6.0)
    assert event == ConnectionClosed(reason="peer not responding", code=CloseCode.TIMEOUT, by_peer=False, error=True)
    assert a.state is State.CLOSED and a.next_deadline() is None
    (told,) = b.receive_data(ping + a.data_to_send(), 6.0)  # if the peer does hear it all late
    assert (told.code, told.by_peer, told.error) == (CloseCode.TIMEOUT, True, True)


def test_receiving_anything_postpones_death() -> None:
    a, b = connected_pair(keepalive_s=2.0, dead_after_s=6.0)
    b.send_message(b"\x30tree", 5.0)
    a.receive_data(b.data_to_send(), 5.0)
    assert a.next_deadline() == 2.0  # the ping is due first
    a.handle_timer(2.0)
    assert a.next_deadline() == 11.0
    assert a.handle_timer(10.0) == []


@pytest.mark.parametrize("closer", ["initiator", "responder"])
def test_clean_close_either_way(closer: str) -> None:
    a, b = connected_pair()
    x, y = (a, b) if closer == "initiator" else (b, a)
    x.send_message(b"\x20last words", 1.0)
    (local,) = x.close("meeting over", 1.0)
    assert local == ConnectionClosed("meeting over", CloseCode.NORMAL, by_peer=False, error=False)
    assert x.state is State.CLOSED
    x.send_message(b"never sent", 1.0)
    wire = x.data_to_send()
    events = y.receive_data(wire + b"garbage after close", 1.0)
    assert events == [
        MessageReceived(b"\x20last words"),
        ConnectionClosed("meeting over", CloseCode.NORMAL, by_peer=True, error=False),
    ]
    assert y.state is State.CLOSED and y.data_to_send() == b"" and y.next_deadline() is None
    assert y.receive_data(b"", 2.0) == [] and x.receive_data(b"more", 2.0) == []


def test_going_away_close_and_long_reason_text() -> None:
    a, b = connected_pair()
    a.close("máy chủ tắt " * 40, 1.0, code=CloseCode.GOING_AWAY)
    (event,) = b.receive_data(a.data_to_send(), 1.0)
    assert event.code == CloseCode.GOING_AWAY and not event.error
    assert event.reason.startswith("máy chủ tắt") and len(event.reason.encode()) <= 120


def test_eof_without_close_and_truncated_frame() -> None:
    a, b = connected_pair()
    (event,) = b.receive_data(b"", 1.0)
    assert (event.reason, event.code, event.by_peer, event.error) == ("connection lost", CloseCode.CONNECTION_LOST, True, True)
    assert b.data_to_send() == b""

    a, b = connected_pair()
    a.send_message(b"\x20cut short", 1.0)
    wire = a.data_to_send()
    assert b.receive_data(wire[:-3], 1.0) == []
    (event,) = b.receive_data(b"", 1.0)
    assert event.reason == "truncated frame" and event.error


def test_oversized_length_prefix_closes_with_a_close_frame() -> None:
    a, b = connected_pair(max_frame_bytes=1024)
    (event,) = b.receive_data((5000).to_bytes(2, "big"), 1.0)
    assert (event.code, event.reason, event.error, event.by_peer) == (CloseCode.FRAME_TOO_LARGE, "frame too large", True, False)
    (told,) = a.receive_data(b.data_to_send(), 1.0)
    assert told.code == CloseCode.FRAME_TOO_LARGE and told.by_peer


def test_corrupt_frame_closes_and_the_peer_learns_why() -> None:
    a, b = connected_pair()
    a.send_message(b"\x20hello", 1.0)
    wire = bytearray(a.data_to_send())
    wire[5] ^= 1
    (event,) = b.receive_data(bytes(wire), 1.0)
    assert (event.code, event.error) == (CloseCode.DECRYPT_FAILED, True)
    (told,) = a.receive_data(b.data_to_send(), 1.0)
    assert (told.code, told.reason, told.by_peer, told.error) == (CloseCode.DECRYPT_FAILED, "decryption failed", True, True)


def test_malformed_control_frames_are_protocol_errors() -> None:
    for frame_type, body in [(1, b"abc"), (2, b"abcde"), (3, b""), (9, b"")]:
        a, b = connected_pair()
        a._send_frame(frame_type, body)
        (event,) = b.receive_data(a.data_to_send(), 1.0)
        assert (event.code, event.error) == (CloseCode.PROTOCOL_ERROR, True), frame_type


def test_operator_error_is_vietnamese_first() -> None:
    error = operator_error(ConnectionClosed("not on roster", CloseCode.NOT_ON_ROSTER, by_peer=False, error=True))
    assert isinstance(error, MeshmeetError)
    assert str(error).startswith("Liên kết bị đóng") and str(error).endswith("link closed locally: not on roster")
