"""The guarded accept loops of the web listeners (web/listen_guard.py) stop when their server
closes, without polling for it (issue 16: an idle node's web thread woke 4x/s per listener)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from meshmeet.web.listen_guard import GuardedLoop, WebLimits

LOOP_TURNS = 200  # loop iterations given to the accept loop to see the close (no clock involved)


def test_a_closed_server_stops_accepting_at_once() -> None:
    loop = GuardedLoop(WebLimits())

    async def main() -> None:
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # accepted through the guard's duplicate of the listening socket
        guard = loop.guards[0]
        for _ in range(LOOP_TURNS):
            if guard.accepted:
                break
            await asyncio.sleep(0)
        assert guard.accepted == 1
        for _ in range(LOOP_TURNS):  # readiness callbacks queued with the accept are spent: it waits again
            await asyncio.sleep(0)
        accept_loops = {t for t in guard._tasks if "_accept_loop" in repr(t.get_coro())}
        assert accept_loops
        server.close()
        for _ in range(LOOP_TURNS):
            if all(t.done() for t in accept_loops):
                break
            await asyncio.sleep(0)
        assert all(t.done() for t in accept_loops), "the accept loop did not see its server close"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        left = asyncio.all_tasks(loop)  # the trimmer, the accepted connection's first-byte wait
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()
