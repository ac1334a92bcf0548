"""The release service looks again when a table it reads changes, not on a short poll: idle, it
sleeps IDLE_CHECK_S; a new manifest, a document held whole or a meeting's end wakes it at once;
while a release is under way it still looks every CHECK_S. (trio's MockClock: virtual time.)"""

from __future__ import annotations

import trio
import trio.testing

from meshmeet.node import release_service as R


class _Sync:
    def __init__(self) -> None:
        self.listeners: list = []
        self.lock = trio.Lock()

    def on_tables_changed(self, listener) -> None:
        self.listeners.append(listener)

    def changed(self, *tables: str) -> None:
        for listener in self.listeners:
            listener(list(tables))


def _service(steps: list[float], busy_after: float | None = None) -> tuple[R.ReleaseService, _Sync]:
    sync = _Sync()
    svc = R.ReleaseService(node=None, sync=sync)  # type: ignore[arg-type]

    async def step() -> None:
        now = trio.current_time()
        steps.append(now)
        if busy_after is not None and now >= busy_after:
            svc.target = object()  # type: ignore[assignment]  # a release is being fetched

    async def record() -> None:
        return None

    svc._step, svc._record = step, record  # type: ignore[method-assign]
    return svc, sync


def test_idle_it_waits_for_a_change_to_what_it_reads() -> None:
    steps: list[float] = []

    async def main() -> None:
        svc, sync = _service(steps)
        async with trio.open_nursery() as n:
            n.start_soon(svc.run)
            await trio.sleep(5)
            sync.changed("announcements", "feedback")  # nothing the release service reads
            await trio.sleep(1)
            sync.changed("documents")  # a manifest may have arrived
            await trio.sleep(41)
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert steps == [0.0, 6.0, 6.0 + R.IDLE_CHECK_S], steps


def test_under_way_it_still_looks_every_check_period() -> None:
    steps: list[float] = []

    async def main() -> None:
        svc, sync = _service(steps, busy_after=0.0)
        async with trio.open_nursery() as n:
            n.start_soon(svc.run)
            await trio.sleep(3 * R.CHECK_S + 0.5)
            sync.changed("doc_holdings")  # the bundle is whole here: install now, not at the next tick
            await trio.sleep(0.1)
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    k = R.CHECK_S
    assert steps == [0.0, k, 2 * k, 3 * k, 3 * k + 0.5], steps
