"""The same tree cores driven by trio tasks, for runs under trio.testing.MockClock.

One task per node owns its TreeNode: it waits for a message or its next deadline and feeds the
core. Links deliver after their delay (FIFO per direction) through memory channels. This is the
shape of the real node's tree driver, kept here so tests can show the discrete-event simulator and
a trio run agree. It must never use the wall clock (trio.current_time() is the MockClock's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import trio

from ..tree.core import TreeNode
from ..tree.outputs import Output, TreeTimers
from ..tree.cost import LinkCostInputs
from .scenario import LinkSpec, Scenario

INBOX_SIZE = 1024
_WAKE = ("", b"")     # not a message: makes a node task re-read its core's deadline


@dataclass
class _NodeTask:
    core: TreeNode
    inbox_send: trio.MemorySendChannel[tuple[str, bytes]]
    inbox_recv: trio.MemoryReceiveChannel[tuple[str, bytes]]
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)


class TrioNet:
    """A set of nodes and links inside one nursery. Call start() from within `async with` of a nursery."""

    def __init__(self, scenario: Scenario, nursery: trio.Nursery, timers: TreeTimers | None = None) -> None:
        self.scenario = scenario
        self._nursery = nursery
        self._timers = timers or TreeTimers()
        self._specs = {n.id: n for n in scenario.nodes}
        self._links: dict[frozenset[str], LinkSpec] = {frozenset((l.a, l.b)): l for l in scenario.links}
        self._up_links: set[frozenset[str]] = set()
        self._last_arrival: dict[tuple[str, str], float] = {}
        self._generation: dict[frozenset[str], int] = {}
        self.nodes: dict[str, _NodeTask] = {}

    def core(self, node: str) -> TreeNode | None:
        task = self.nodes.get(node)
        return task.core if task is not None else None

    def start_node(self, node: str) -> None:
        send, recv = trio.open_memory_channel[tuple[str, bytes]](INBOX_SIZE)
        spec = self._specs[node]
        task = _NodeTask(TreeNode(node, spec.priority, trio.current_time(), self._timers), send, recv)
        self.nodes[node] = task
        self._nursery.start_soon(self._run_node, task)
        for pair, link in self._links.items():
            if node in pair:
                other = link.b if link.a == node else link.a
                if other in self.nodes:
                    self.link_up(node, other)

    def stop_node(self, node: str) -> None:
        """Like a process dying: its links close, and the peers hear of it at once."""
        task = self.nodes.pop(node)
        task.cancel.cancel()
        for pair in [p for p in self._up_links if node in p]:
            self._up_links.discard(pair)
            self._generation[pair] = self._generation.get(pair, 0) + 1
            (other,) = pair - {node}
            peer = self.nodes.get(other)
            if peer is not None:
                self._dispatch(other, peer.core.link_down(node, trio.current_time()))

    def link_up(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        spec = self._links[pair]
        self._up_links.add(pair)
        self._generation[pair] = self._generation.get(pair, 0) + 1
        inputs = LinkCostInputs(2 * spec.delay_s, spec.loss, spec.bandwidth_bps, spec.metered)
        for end, other in ((a, b), (b, a)):
            self._dispatch(end, self.nodes[end].core.link_up(other, inputs, trio.current_time()))

    def link_down(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair not in self._up_links:
            return
        self._up_links.discard(pair)
        self._generation[pair] = self._generation.get(pair, 0) + 1
        for end, other in ((a, b), (b, a)):
            task = self.nodes.get(end)
            if task is not None:
                self._dispatch(end, task.core.link_down(other, trio.current_time()))

    def _dispatch(self, src: str, out: Output) -> None:
        task = self.nodes.get(src)
        if task is not None:
            task.inbox_send.send_nowait(_WAKE)   # a call from outside its task may move its deadline
        for dst, data in out.sends:
            pair = frozenset((src, dst))
            if pair not in self._up_links:
                continue
            spec = self._links[pair]
            now = trio.current_time()
            arrival = max(now + spec.delay_s + (len(data) + self.scenario.wire_overhead_bytes) * 8 / spec.bandwidth_bps,
                          self._last_arrival.get((src, dst), 0.0))
            self._last_arrival[(src, dst)] = arrival
            self._nursery.start_soon(self._deliver, pair, self._generation.get(pair, 0), src, dst, data, arrival)

    async def _deliver(self, pair: frozenset[str], generation: int, src: str, dst: str, data: bytes, at: float) -> None:
        await trio.sleep_until(at)
        task = self.nodes.get(dst)
        if task is not None and self._generation.get(pair) == generation:
            task.inbox_send.send_nowait((src, data))

    async def _run_node(self, task: _NodeTask) -> None:
        with task.cancel:
            while True:
                deadline = task.core.next_deadline()
                message = None
                with trio.move_on_at(deadline if math.isfinite(deadline) else math.inf):
                    message = await task.inbox_recv.receive()
                now = trio.current_time()
                if message is None:
                    self._dispatch(task.core.node_id, task.core.handle_timer(now))
                elif message is _WAKE:
                    continue
                else:
                    self._dispatch(task.core.node_id, task.core.receive(message[0], message[1], now))
