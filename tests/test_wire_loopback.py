"""The link core over a real TCP connection on loopback, driven by a minimal trio loop."""

from __future__ import annotations

import trio

from meshmeet.wire import ConnectionClosed, HandshakeComplete, LinkConnection, MessageReceived, Role, RttSample
from meshmeet.wire.testing import TestRoster, make_connection

ROSTER = TestRoster()
ROSTER.add(11), ROSTER.add(12)


async def drive(
    stream: trio.abc.Stream, conn: LinkConnection, outbox: list[bytes], sink: list, send_lock: trio.Lock
) -> None:
    """Feed the socket into the core until it closes; send `outbox` once established."""

    async def flush() -> None:
        async with send_lock:
            data = conn.data_to_send()
            if data:
                await stream.send_all(data)

    await flush()
    while True:
        deadline = conn.next_deadline()
        with trio.move_on_at(deadline if deadline is not None else float("inf")) as scope:
            data = await stream.receive_some(65536)
        events = conn.handle_timer(trio.current_time()) if scope.cancelled_caught else conn.receive_data(data, trio.current_time())
        for event in events:
            sink.append(event)
            if isinstance(event, HandshakeComplete):
                for payload in outbox:
                    conn.send_message(payload, trio.current_time())
        await flush()
        if any(isinstance(e, ConnectionClosed) for e in events):
            await stream.aclose()
            return


async def test_handshake_messages_ping_and_close_over_loopback_tcp() -> None:
    client_events: list = []
    server_events: list = []
    big = b"\x40" + bytes(range(256)) * 200  # ~51 KB: several TCP segments
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def serve_one() -> None:
            stream = await listeners[0].accept()
            conn = make_connection(ROSTER, 12, Role.RESPONDER, now=trio.current_time(), keepalive_s=0.05)
            await drive(stream, conn, [b"\x10hello from R"], server_events, trio.Lock())

        nursery.start_soon(serve_one)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = make_connection(ROSTER, 11, Role.INITIATOR, now=trio.current_time(), keepalive_s=0.05)
        conn.start(trio.current_time())
        client_lock = trio.Lock()

        async def close_after_rtt() -> None:
            while not any(isinstance(e, RttSample) for e in client_events):
                await trio.sleep(0.01)
            async with client_lock:
                conn.close("test done", trio.current_time())
                await stream.send_all(conn.data_to_send())
                await stream.aclose()

        nursery.start_soon(close_after_rtt)
        try:
            await drive(stream, conn, [b"\x20hello from I", big], client_events, client_lock)
        except trio.ClosedResourceError:
            pass
        await listeners[0].aclose()

    assert isinstance(client_events[0], HandshakeComplete) and client_events[0].peer_short_id == 12
    assert isinstance(server_events[0], HandshakeComplete) and server_events[0].peer_short_id == 11
    assert MessageReceived(b"\x10hello from R") in client_events
    got = [e.payload for e in server_events if isinstance(e, MessageReceived)]
    assert got == [b"\x20hello from I", big]
    assert isinstance(server_events[-1], ConnectionClosed)
    assert (server_events[-1].reason, server_events[-1].by_peer, server_events[-1].error) == ("test done", True, False)
    assert conn.rtt_s is not None and conn.rtt_s >= 0
