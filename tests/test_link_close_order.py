"""A link closed right after a message was queued still delivers that message, then the close.

HQ revokes a seat by queueing the revocation entry to the revoked node and closing the link at once
(node.py `_roster_grew`: "the revoked node learns why"). The writer task may already hold the entry,
taken off the queue but not yet handed to the connection, when the close runs: the close then shut
the connection first and the entry was dropped (test_doctor_nodes' "known race", 1 run in 3). Real
loopback TCP, the real sans-IO connection on both ends, the real writer; repeated, since which of
two ready trio tasks runs first is up to the scheduler."""

from __future__ import annotations

import trio

from meshmeet.node.link import Link, guard_writer
from meshmeet.wire import ConnectionClosed, MessageReceived
from meshmeet.wire.testing import connected_pair

ROUNDS = 40


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """Both ends of one real loopback TCP connection: (client, server)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return client, server


async def one_round() -> list:
    a_conn, b_conn = connected_pair()
    client, server = await tcp_pair()
    link = Link(client, a_conn, "loopback", 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(guard_writer, link)
        await trio.sleep(0.001)  # the writer waits on its empty queue
        assert link.send_nowait(b"revocation entry")
        nursery.start_soon(link.close, "revoked")  # as Links.close_peer does: a task of its own
        got = b""
        with trio.fail_after(10):  # hang guard
            async for data in server:
                got += data
        await server.aclose()
    return b_conn.receive_data(got, trio.current_time())


def test_a_message_queued_just_before_a_close_arrives_before_it() -> None:
    for i in range(ROUNDS):
        events = trio.run(one_round)
        payloads = [e.payload for e in events if isinstance(e, MessageReceived)]
        assert payloads == [b"revocation entry"], f"round {i}: {events}"
        assert isinstance(events[-1], ConnectionClosed) and events[-1].reason == "revoked", f"round {i}: {events}"


def test_closing_a_link_whose_writer_already_stopped_raises_nothing() -> None:
    """The writer stops when a write fails (the socket is gone), its connection still open; a close
    after that finds its own close request still queued and must not send it as a message (it did:
    a TypeError that took the whole node down, seen once in a full test run)."""
    async def main() -> None:
        a_conn, _ = connected_pair()
        client, server = await tcp_pair()
        link = Link(client, a_conn, "loopback", 1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(guard_writer, link)
            await trio.sleep(0.01)
            await client.aclose()  # the socket is gone under the writer
            assert link.send_nowait(b"too late")  # the writer takes it, its write fails, and it stops
            await trio.sleep(0.01)
            with trio.fail_after(5):
                await link.close("revoked")
        await server.aclose()

    trio.run(main)


def test_a_bug_in_one_links_close_drops_that_link_and_nothing_else() -> None:
    """A close that raises, run in the node-wide nursery as Links runs it, must not end that
    nursery (the node): it is logged and the link's stream is dropped."""
    from meshmeet.node.links import close_guarded

    class BuggyLink:
        address = "loopback"

        def __init__(self, stream: trio.SocketStream) -> None:
            self.stream = stream

        async def close(self, reason: str) -> None:
            raise TypeError("a bug in close")

    async def main() -> None:
        client, server = await tcp_pair()
        sibling_ran = trio.Event()
        async with trio.open_nursery() as nursery:  # the node's nursery
            nursery.start_soon(close_guarded, BuggyLink(client), "revoked")

            async def sibling() -> None:
                await trio.sleep(0.05)
                sibling_ran.set()
            nursery.start_soon(sibling)
            with trio.fail_after(10):  # hang guard
                assert await server.receive_some(100) == b""  # the peer sees the stream closed
        assert sibling_ran.is_set()
        await server.aclose()

    trio.run(main)
