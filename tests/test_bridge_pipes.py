"""The bridge's credit pipes on their own, across a real asyncio thread, under Hypothesis:
whatever the capacity and the mix of waiting/non-waiting sends, messages arrive once, in order,
nothing is lost except what try_send reported as dropped, and credits always come back.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.web.bridge import Inbound, Outbound, run_in_loop


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


ops = st.lists(
    st.tuples(st.sampled_from(["send", "try", "yield", "hold"]), st.integers(1, 12)),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 6), plan=ops)
async def test_outbound_delivers_in_order_and_returns_credits(capacity, plan):
    lt = LoopThread()
    delivered: list[tuple[str, str]] = []  # appended on the asyncio thread only
    token = trio.lowlevel.current_trio_token()
    pipe = Outbound(token, lt.loop, lambda t, p: delivered.append((t, p)), capacity)
    expected: list[tuple[str, str]] = []
    dropped = 0
    n = 0
    try:
        for op, count in plan:
            if op == "yield":
                await trio.sleep(0)
                continue
            if op == "hold":  # the asyncio side stalls while we keep trying
                release = threading.Event()

                async def hold() -> None:
                    release.wait()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run_in_loop, lt.loop, hold())
                    await trio.testing.wait_all_tasks_blocked()  # hold() is queued on the loop first
                    try:
                        for _ in range(count):
                            n += 1
                            if pipe.try_send("t", str(n)):
                                expected.append(("t", str(n)))
                            else:
                                dropped += 1
                        assert pipe.stats.credits >= 0
                    finally:
                        release.set()  # a failure must fail, not hang the loop thread
                continue
            for _ in range(count):
                n += 1
                if op == "send":
                    await pipe.send("t", str(n))
                    expected.append(("t", str(n)))
                elif pipe.try_send("t", str(n)):
                    expected.append(("t", str(n)))
                else:
                    dropped += 1
        while pipe.stats.credits < capacity:  # every credit comes back once all is taken
            await trio.sleep(0.001)

        async def snapshot() -> list[tuple[str, str]]:
            return list(delivered)

        got = await run_in_loop(lt.loop, snapshot())
    finally:
        pipe.close()
        lt.close()
    assert got == expected
    assert pipe.stats.dropped == dropped
    assert pipe.stats.sent == len(expected)


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 12), sizes=st.lists(st.integers(0, 30), min_size=1, max_size=4), pace=st.integers(0, 3))
async def test_inbound_delivers_in_order_within_capacity(capacity, sizes, pace):
    lt = LoopThread()
    token = trio.lowlevel.current_trio_token()
    pipe = Inbound(token, lt.loop, capacity)
    sent = {k: [f"{k}:{i}" for i in range(size)] for k, size in enumerate(sizes)}

    async def browser(k: int) -> None:  # several browsers sending at once on the asyncio side
        for item in sent[k]:
            await pipe.send(f"b{k}", item)

    try:
        futures = [asyncio.run_coroutine_threadsafe(browser(k), lt.loop) for k in sent]
        got: dict[str, list[str]] = {f"b{k}": [] for k in sent}
        for _ in range(sum(sizes)):
            topic, item = await pipe.receive()
            got[topic].append(item)  # type: ignore[arg-type]
            assert len(pipe._buffer) <= capacity
            for _ in range(pace):
                await trio.sleep(0)
        for f in futures:
            await trio.to_thread.run_sync(f.result)
        assert pipe.receive_nowait() is None
    finally:
        pipe.close()
        lt.close()
    assert got == {f"b{k}": items for k, items in sent.items()}


async def test_inbound_close_ends_the_stream_after_draining_and_stops_senders():
    lt = LoopThread()
    token = trio.lowlevel.current_trio_token()
    pipe = Inbound(token, lt.loop, 2)
    try:
        for item in ("a", "b"):
            await trio.to_thread.run_sync(asyncio.run_coroutine_threadsafe(pipe.send("t", item), lt.loop).result)
        blocked = asyncio.run_coroutine_threadsafe(pipe.send("t", "c"), lt.loop)  # no credit left
        while len(pipe._buffer) < 2:
            await trio.sleep(0.001)
        pipe.close()
        with pytest.raises(ConnectionResetError):
            await trio.to_thread.run_sync(blocked.result)
        assert [item async for item in pipe] == [("t", "a"), ("t", "b")]
        with pytest.raises(trio.EndOfChannel):
            await pipe.receive()
    finally:
        lt.close()


async def test_outbound_close_wakes_a_parked_sender():
    lt = LoopThread()
    token = trio.lowlevel.current_trio_token()
    release, holding = threading.Event(), threading.Event()
    pipe = Outbound(token, lt.loop, lambda t, p: None, 1)
    try:
        async with trio.open_nursery() as nursery:

            async def hold() -> None:
                holding.set()
                release.wait()

            nursery.start_soon(run_in_loop, lt.loop, hold())
            await trio.to_thread.run_sync(holding.wait)  # the loop is held from here on
            await pipe.send("t", "1")
            errors: list[BaseException] = []

            async def second() -> None:
                try:
                    await pipe.send("t", "2")
                except trio.ClosedResourceError as e:
                    errors.append(e)

            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            pipe.close()
            await trio.testing.wait_all_tasks_blocked()
            assert len(errors) == 1
            release.set()
        with pytest.raises(trio.ClosedResourceError):
            pipe.try_send("t", "3")
    finally:
        release.set()  # never leave the loop held, or close() would wait for it forever
        lt.close()
