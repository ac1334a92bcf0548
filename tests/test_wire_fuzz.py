"""Hypothesis against the link core: hostile bytes, hostile chunking, hostile schedules.

Whatever arrives, the connection answers with events or ConnectionClosed(error=True) and
never raises; after closing it ignores input.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.wire import (
    ConnectionClosed,
    HandshakeComplete,
    LinkConnection,
    MessageReceived,
    Role,
    RttSample,
    State,
)
from meshmeet.wire.handshake import MSG1_BYTES
from meshmeet.wire.testing import TEST_COMMUNE_ID, TestRoster, connected_pair, make_connection

ROSTER = TestRoster()
for _short_id in (1, 2, 3):
    ROSTER.add(_short_id)

chunks = st.lists(st.binary(min_size=1, max_size=120), max_size=8)


def feed(conn: LinkConnection, pieces: list[bytes], now: float = 1.0, eof: bool = False) -> list:
    events = []
    for piece in pieces + ([b""] if eof else []):
        events += conn.receive_data(piece, now)
    check_events(conn, events)
    return events


def check_events(conn: LinkConnection, events: list) -> None:
    assert all(isinstance(e, (HandshakeComplete, MessageReceived, RttSample, ConnectionClosed)) for e in events)
    closes = [i for i, e in enumerate(events) if isinstance(e, ConnectionClosed)]
    assert len(closes) <= 1
    if closes:
        assert closes[0] == len(events) - 1
        assert conn.state is State.CLOSED
        assert conn.receive_data(b"\x00" * 40, 2.0) == []


@settings(max_examples=150, deadline=None)
@given(pieces=chunks, eof=st.booleans())
def test_any_bytes_to_a_fresh_responder(pieces: list[bytes], eof: bool) -> None:
    conn = make_connection(ROSTER, 2, Role.RESPONDER)
    events = feed(conn, pieces, eof=eof)
    assert not any(isinstance(e, (HandshakeComplete, MessageReceived)) for e in events)
    assert all(e.error for e in events if isinstance(e, ConnectionClosed))


@settings(max_examples=150, deadline=None)
@given(pieces=chunks, eof=st.booleans())
def test_any_bytes_to_a_fresh_initiator(pieces: list[bytes], eof: bool) -> None:
    conn = make_connection(ROSTER, 1, Role.INITIATOR)
    conn.start(0.0)
    events = feed(conn, pieces, eof=eof)
    assert not any(isinstance(e, (HandshakeComplete, MessageReceived)) for e in events)
    assert all(e.error for e in events if isinstance(e, ConnectionClosed))


@settings(max_examples=150, deadline=None)
@given(prefix_ok=st.booleans(), pieces=chunks, tail=st.binary(max_size=60))
def test_valid_msg1_then_any_bytes_to_a_responder(prefix_ok: bool, pieces: list[bytes], tail: bytes) -> None:
    initiator = make_connection(ROSTER, 1, Role.INITIATOR)
    initiator.start(0.0)
    msg1 = initiator.data_to_send()
    conn = make_connection(ROSTER, 2, Role.RESPONDER)
    events = feed(conn, ([msg1] if prefix_ok else [msg1[: MSG1_BYTES - 1]]) + pieces + [tail])
    assert not any(isinstance(e, (HandshakeComplete, MessageReceived)) for e in events)


@settings(max_examples=150, deadline=None)
@given(role=st.sampled_from(["initiator", "responder"]), pieces=chunks, eof=st.booleans())
def test_any_bytes_to_an_established_connection(role: str, pieces: list[bytes], eof: bool) -> None:
    a, b = connected_pair(ROSTER)
    conn = a if role == "initiator" else b
    events = feed(conn, pieces, eof=eof)
    assert not any(isinstance(e, (HandshakeComplete, MessageReceived, RttSample)) for e in events)
    assert all(e.error for e in events if isinstance(e, ConnectionClosed))
    if any(isinstance(e, ConnectionClosed) for e in events) and not eof:
        # a close frame went out over the established transport, and the peer can read it
        told = (b if conn is a else a).receive_data(conn.data_to_send(), 2.0)
        assert isinstance(told[-1], ConnectionClosed) and told[-1].by_peer and told[-1].error


@st.composite
def mutations(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "insert", "delete"]),
                st.integers(min_value=0, max_value=400),
                st.integers(min_value=0, max_value=255),
            ),
            min_size=1,
            max_size=3,
        )
    )


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, position, value in ops:
        if not out and op != "insert":
            continue
        position %= len(out) + (1 if op == "insert" else 0)
        if op == "flip":
            out[position] ^= value or 1
        elif op == "insert":
            out.insert(position, value)
        else:
            del out[position]
    return bytes(out)


@settings(max_examples=120, deadline=None)
@given(direction=st.sampled_from(["a->b", "b->a"]), ops=mutations(), splits=st.lists(st.integers(1, 80), max_size=5))
def test_a_mutated_session_never_raises_and_never_delivers_altered_data(
    direction: str, ops: list, splits: list[int]
) -> None:
    """A man in the middle alters the initiator's (or responder's) whole byte stream."""
    a = make_connection(ROSTER, 1, Role.INITIATOR)
    b = make_connection(ROSTER, 2, Role.RESPONDER)
    a.start(0.0)
    sent_messages = [b"\x20one", b"\x40two" * 10]
    events_a: list = []
    events_b: list = []
    for _round in range(4):
        to_b, to_a = a.data_to_send(), b.data_to_send()
        if direction == "a->b" and to_b:
            to_b = mutate(to_b, ops)
        if direction == "b->a" and to_a:
            to_a = mutate(to_a, ops)
        for receiver, data, sink in ((b, to_b, events_b), (a, to_a, events_a)):
            cursor = 0
            for size in splits + [len(data)]:
                if cursor >= len(data):
                    break
                sink += receiver.receive_data(data[cursor : cursor + size], 0.0)
                cursor += size
        if a.state is State.ESTABLISHED and a.messages_sent == 0:
            for m in sent_messages:
                a.send_message(m, 0.0)
    check_events(a, events_a)
    check_events(b, events_b)
    received = [e.payload for e in events_b if isinstance(e, MessageReceived)]
    assert received == sent_messages[: len(received)]  # a prefix of what was sent, never altered


@settings(max_examples=80, deadline=None)
@given(
    schedule=st.lists(
        st.tuples(
            st.sampled_from(["send_a", "send_b", "timer_a", "timer_b", "deliver_a", "deliver_b", "close_a"]),
            st.floats(min_value=0.0, max_value=8.0),
            st.integers(min_value=0, max_value=200),
        ),
        max_size=30,
    )
)
def test_any_schedule_of_sends_timers_and_partial_deliveries(schedule: list) -> None:
    a, b = connected_pair(ROSTER, keepalive_s=2.0)
    now = 0.0
    pending = {"a": bytearray(), "b": bytearray()}  # bytes in flight *to* a / b
    events = {"a": [], "b": []}
    conns = {"a": a, "b": b}
    sent: dict[str, list[bytes]] = {"a": [], "b": []}
    for action, dt, size in schedule:
        now += dt
        name = action[-1]
        conn, other = conns[name], conns["b" if name == "a" else "a"]
        if action.startswith("send"):
            payload = bytes([0x20]) + size.to_bytes(2, "big") + bytes([len(sent[name])]) * size
            if conn.send_message(payload, now):
                sent[name].append(payload)
        elif action.startswith("timer"):
            events[name] += conn.handle_timer(now)
        elif action.startswith("deliver"):
            pending[name] += other.data_to_send()
            piece = bytes(pending[name][:size])
            del pending[name][:size]
            if piece:
                events[name] += conn.receive_data(piece, now)
        else:
            events["a"] += a.close("done", now)
        pending["a"] += b.data_to_send()
        pending["b"] += a.data_to_send()
    for name in ("a", "b"):
        check_events(conns[name], events[name])
    # Whatever was delivered is an in-order prefix of what the other side sent.
    for receiver, sender in (("a", "b"), ("b", "a")):
        got = [e.payload for e in events[receiver] if isinstance(e, MessageReceived)]
        assert got == sent[sender][: len(got)]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=600), max_size=10))
def test_chunking_does_not_change_the_outcome(cuts: list[int]) -> None:
    a = make_connection(ROSTER, 1, Role.INITIATOR)
    b = make_connection(ROSTER, 3, Role.RESPONDER)
    a.start(0.0)
    b.receive_data(a.data_to_send(), 0.0)
    a.receive_data(b.data_to_send(), 0.0)
    messages = [b"\x20" + bytes([i]) * (i * 7) for i in range(12)]
    for m in messages:
        a.send_message(m, 0.0)
    stream = a.data_to_send()
    events = []
    cursor = 0
    for size in cuts + [len(stream)]:
        events += b.receive_data(stream[cursor : cursor + size], 0.0)
        cursor += size
        if cursor >= len(stream):
            break
    assert isinstance(events[0], HandshakeComplete)
    assert [e.payload for e in events[1:]] == messages


def test_a_fresh_initiator_fed_before_start_refuses() -> None:
    conn = LinkConnection(
        role=Role.INITIATOR, me=ROSTER.members[1], my_short_id=1, commune_id=TEST_COMMUNE_ID,
        lookup=ROSTER.lookup, now=0.0,
    )
    (event,) = conn.receive_data(b"hello", 0.0)
    assert isinstance(event, ConnectionClosed) and event.error
    assert conn.data_to_send() == b""


@settings(max_examples=150, deadline=None)
@given(msg=st.binary(min_size=0, max_size=120), which=st.sampled_from(["msg1", "msg2", "msg3"]))
def test_handshake_parsers_raise_only_handshake_errors(msg: bytes, which: str) -> None:
    from meshmeet.wire.handshake import HandshakeError, InitiatorHandshake, ResponderHandshake

    common = dict(commune_id=TEST_COMMUNE_ID, lookup=ROSTER.lookup)
    try:
        if which == "msg2":
            InitiatorHandshake(me=ROSTER.members[1], my_short_id=1, **common).on_msg2(msg)
        else:
            responder = ResponderHandshake(me=ROSTER.members[2], my_short_id=2, **common)
            if which == "msg3":
                initiator = InitiatorHandshake(me=ROSTER.members[1], my_short_id=1, **common)
                responder.on_msg1(initiator.msg1)
                responder.on_msg3(msg)
            else:
                responder.on_msg1(msg)
                return  # a random msg1 can be acceptable: it only names a member and a key
        raise AssertionError("random bytes completed a handshake")
    except HandshakeError as error:
        assert error.reason
