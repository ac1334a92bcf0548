"""Many HTTP requests' calls to one node handler, carried across the bridge as one call (asyncio side).

A page whose requests each end in the same node call (the resident page's submissions) gives each
request's item to a ``CallBatcher``: the items that arrive while the previous batch is with the
node, or within the same loop tick, go over as one ``api_call(name, {"items": [...]})``, and the
node's answer ``{"results": [...]}`` (one entry per item, in order: a dict, or an ``ApiError`` for
that item alone) is handed back to each request. One crossing each way and one node task per batch
instead of per request, and the node sees the whole batch at once (one transaction, one signed
batch). At most one batch is in flight, so the batch grows exactly when the node is busy; and
while it is busy (the batch before carried more than one item) a batch waits up to BUSY_LINGER_S
for more items before it goes, unless it is full already or holds as many items as were waiting
at once lately (queued and with the node: about as many as there are active senders, so the wait
ends when the last of them is in, not when the timer does; a wait that times out lowers that mark
to what came): the node's cost per batch (a crossing each way, a transaction, a signature, a
commit) is then shared by more items, for a wait much shorter than a request's own round trip. A
quiet node (one request at a time) never waits.

Every item gets exactly one outcome: its own result, its own error, or, when the whole call fails
(the node stopping, a disk full, a malformed answer), that call's error. A request whose handler
gave up (the client went away) still has its item carried: the node decides, the answer is dropped.
Runs on the gateway's loop only; this module must never import trio, never hand an item's result
to another item's request, and never retry a call (the node may have acted on it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..api.contract import ApiCall, ApiError, internal_error, node_stopping

log = logging.getLogger(__name__)

MAX_ITEMS = 64  # items per call: a batch's answer waits for all of them
BUSY_LINGER_S = 0.004  # while busy, how long a batch waits for more items (scripts/bench/citizens.py:
# 4 ms: groups of ~7.7 instead of ~4.6 under 8 phones, ~20 % less node CPU per submission)


class CallBatcher:
    def __init__(self, api_call: ApiCall, name: str, *, max_items: int = MAX_ITEMS,
                 linger_s: float = BUSY_LINGER_S) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        if linger_s < 0:
            raise ValueError("linger_s must not be negative")
        self._api_call = api_call
        self._name = name
        self._max = max_items
        self._linger_s = linger_s
        self._busy = False  # the last batch carried more than one item
        self._filled: asyncio.Future[bool] | None = None  # a lingering batch's wake-up (True: timed out)
        self._queue: list[tuple[Any, asyncio.Future[dict]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._in_flight = 0  # items of the batch with the node
        self._peak = 0  # the most items waiting at once (queued and in flight) since a wait timed out
        self.calls = 0  # node calls made (items / calls: the mean batch)
        self.items = 0

    async def call(self, item: Any) -> dict:
        """This item's result from the node, or its ApiError raised."""
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._peak = max(self._peak, len(self._queue) + self._in_flight)
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send())
        elif self._filled is not None and len(self._queue) >= self.target:
            _wake(self._filled)
        return await future

    @property
    def target(self) -> int:
        """How many items a lingering batch waits for: as many as were waiting at once lately."""
        return max(1, min(self._max, self._peak))

    async def _linger(self) -> None:
        """While busy: wait up to linger_s for the batch to reach `target` (at once when it has)."""
        if not self._busy or self._linger_s <= 0 or len(self._queue) >= self.target:
            return
        loop = asyncio.get_running_loop()
        self._filled = filled = loop.create_future()
        timer = loop.call_later(self._linger_s, _time_out, filled)
        try:
            timed_out = await filled
        finally:
            timer.cancel()
            self._filled = None
        if timed_out:  # fewer senders than lately: wait for as many as came
            self._peak = len(self._queue)

    async def _send(self) -> None:
        batch: list[tuple[Any, asyncio.Future[dict]]] = []
        try:
            while self._queue:
                await asyncio.sleep(0)  # the requests read in this same tick join the batch
                await self._linger()
                batch, self._queue = self._queue[:self._max], self._queue[self._max:]
                self._busy = len(batch) > 1
                self.calls += 1
                self.items += len(batch)
                self._in_flight = len(batch)
                try:
                    outcomes = await self._outcomes([item for item, _ in batch])
                finally:
                    self._in_flight = 0
                for (_item, future), outcome in zip(batch, outcomes):
                    if future.done():  # its request gave up
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                batch = []
        finally:
            self._sender = None
            # cancelled (the loop is closing): nobody is left to carry these, or to answer them
            for _item, future in (*batch, *self._queue):
                if not future.done():
                    future.set_exception(node_stopping())
            self._queue = []

    async def _outcomes(self, items: list[Any]) -> list[dict | ApiError]:
        """One outcome per item, whatever the call does."""
        try:
            answer = await self._api_call(self._name, {"items": items})
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list) or len(results) != len(items) or not all(
                    isinstance(r, (dict, ApiError)) for r in results):
                log.error("%s answered %d items with a malformed answer", self._name, len(items))
                return [internal_error()] * len(items)
            return results
        except ApiError as e:
            return [e] * len(items)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - every waiting request still gets an answer
            log.exception("%s failed for a batch of %d", self._name, len(items))
            return [internal_error()] * len(items)


def _wake(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


def _time_out(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)
