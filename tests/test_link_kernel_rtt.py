"""link.kernel_min_rtt_s reads the kernel's TCP min RTT of a real loopback connection (TCP_INFO)."""

from __future__ import annotations

import trio

from meshmeet.node.link import kernel_min_rtt_s


def test_kernel_min_rtt_of_a_loopback_connection_is_tiny_and_positive() -> None:
    async def main() -> float | None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            async def echo(server_stream: trio.SocketStream) -> None:
                async for data in server_stream:
                    await server_stream.send_all(data)
            nursery.start_soon(trio.serve_listeners, echo, listeners)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            for _ in range(10):  # round trips for the kernel to measure
                await client.send_all(b"ping")
                await client.receive_some(16)
            rtt = kernel_min_rtt_s(client)
            await client.aclose()
            nursery.cancel_scope.cancel()
        return rtt

    rtt = trio.run(main)
    assert rtt is not None and 0 < rtt < 0.05, rtt  # loopback: microseconds (a LAN's, not a 4G path's)
