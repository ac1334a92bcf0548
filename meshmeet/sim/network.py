"""Deterministic discrete-event simulator: the real TreeNode and Forwarder cores over simulated links.

A priority queue of (time, order) entries drives message deliveries, timers, scenario events and
the broadcast workload; a seeded generator decides losses. Links (sim/links.py) have bandwidth
(serialisation), delay, loss (the link layer retransmits, so a loss is a delay and order is kept;
with the scenario's drop_lost = true a loss drops the message instead, to test robustness), and an
up/down state; a cut is noticed by both ends after the link's detect_s, a node that stops closes
its links at once (like a dying process closing TCP). After every step the observers
(sim/observe.py) check for loops and track convergence; what a run records is in sim/records.py.
This module must never read the wall clock inside the simulation or use randomness other than the
scenario's seed.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any

from ..tree.core import TreeNode
from ..tree.outputs import Output, TreeChanged, TreeTimers
from ..tree.cost import LinkCostInputs
from ..tree.forward import Forwarder
from .links import RETRANSMIT_MIN_S, SimLink
from .observe import ConvergenceTracker, components, find_loop, tree_depth
from .records import BroadcastRecord, Window
from .scenario import EventSpec, LinkSpec, Scenario

__all__ = ["BROADCAST_SETTLE_S", "RETRANSMIT_MIN_S", "Simulator", "Window"]

BROADCAST_SETTLE_S = 5.0     # a broadcast counts as "sent while stable" if no event comes this soon after
SERVICE_TREE = "tree"
SERVICE_BROADCAST = "bcast"


class Simulator:
    """One simulated commune. Use run() for a whole scenario, or run_until()/inject() step by step."""

    def __init__(self, scenario: Scenario, timers: TreeTimers | None = None, *, check_loops: bool = True) -> None:
        self.scenario = scenario
        self.timers = timers or TreeTimers()
        self.now = 0.0
        self._rng = random.Random(scenario.seed)
        self._heap: list[tuple[float, int, str, Any]] = []
        self._order = itertools.count()
        self.specs = {n.id: n for n in scenario.nodes}
        self.cores: dict[str, TreeNode | None] = {n.id: None for n in scenario.nodes}
        self.forwarders: dict[str, Forwarder] = {}
        self._links: dict[frozenset[str], SimLink] = {}
        self._adjacent: dict[str, list[str]] = {n.id: [] for n in scenario.nodes}
        for spec in scenario.links:
            self._links[frozenset((spec.a, spec.b))] = SimLink.of(spec)
            self._adjacent[spec.a].append(spec.b)
            self._adjacent[spec.b].append(spec.a)
        self._timer_at: dict[str, float] = {}
        self.check_loops = check_loops
        self.loop_ever = False
        self.loop_first: tuple[float, list[str]] | None = None
        self.tracker = ConvergenceTracker(self.cores, self.link_phys_up)  # type: ignore[arg-type]
        self._was_bad = True
        self._converged_since: float | None = None
        self.windows: list[Window] = [Window(0.0, "start")]
        self.broadcasts: list[BroadcastRecord] = []
        self._bcast_index: dict[tuple[str, int], int] = {}
        self.messages_total = 0
        self.messages_lost = 0
        self.deliveries: list[Callable[[str, str, bytes], None]] = []   # hooks (node, source, payload)
        event_times = [0.0] + [e.at for e in scenario.events] + [scenario.duration_s]
        self._steady = [(a + scenario.steady_settle_s, b) for a, b in zip(event_times, event_times[1:])
                        if b > a + scenario.steady_settle_s]
        self.steady_seconds = sum(b - a for a, b in self._steady)
        self._event_times = sorted(e.at for e in scenario.events)
        self._push(0.0, "start", None)
        for event in scenario.events:
            self._push(event.at, "event", event)
        if scenario.workload.broadcast_every_s:
            self._push(scenario.workload.broadcast_every_s, "broadcast", None)

    # ---- public driving -------------------------------------------------------------------------

    def run(self) -> None:
        self.run_until(self.scenario.duration_s)
        self.finish_window(self.scenario.duration_s)

    def run_until(self, t: float) -> None:
        while self._heap and self._heap[0][0] <= t:
            when, _, kind, item = heapq.heappop(self._heap)
            self.now = when
            self._dispatch(kind, item)
        self.now = max(self.now, t)

    def inject(self, event: EventSpec) -> None:
        """Schedule an extra event (at event.at >= now); it opens a new report window."""
        self._event_times.append(event.at)
        self._event_times.sort()
        self._push(event.at, "event", event)

    def link_phys_up(self, a: str, b: str) -> bool:
        link = self._links.get(frozenset((a, b)))
        return link is not None and link.phys_up and self.cores.get(a) is not None and self.cores.get(b) is not None

    def link_of(self, a: str, b: str) -> LinkSpec:
        return self._links[frozenset((a, b))].spec

    @property
    def converged(self) -> bool:
        return not self.tracker.bad

    @property
    def converged_since(self) -> float | None:
        return self._converged_since

    def depth(self) -> int:
        """Longest parent chain among live nodes (0 when every node is a root)."""
        return tree_depth(self.cores)  # type: ignore[arg-type]

    def components(self) -> list[list[str]]:
        return components(self.cores, self._adjacent, self.link_phys_up)  # type: ignore[arg-type]

    def link_loads(self) -> list[dict[str, Any]]:
        minutes = self.steady_seconds / 60.0
        return [link.load(minutes) for link in self._links.values()]

    # ---- internals ------------------------------------------------------------------------------

    def _push(self, when: float, kind: str, item: Any) -> None:
        heapq.heappush(self._heap, (when, next(self._order), kind, item))

    def _dispatch(self, kind: str, item: Any) -> None:
        if kind == "deliver":
            self._deliver(*item)
        elif kind == "timer":
            node, deadline = item
            core = self.cores.get(node)
            if core is not None and self._timer_at.get(node) == deadline:
                self._apply(node, core.handle_timer(self.now))
        elif kind == "event":
            self.finish_window(self.now)
            self.windows.append(Window(self.now, item.label))
            self._event(item)
        elif kind == "start":
            for node in self.specs:
                self._node_up(node)
            self._topology_changed()
        elif kind == "notice_down":
            self._notice_down(item)
        elif kind == "connect":
            self._connect(item)
            self._topology_changed()
        elif kind == "broadcast":
            self._broadcast()

    def _event(self, event: EventSpec) -> None:
        if event.action in ("link_down", "link_up"):
            assert event.link is not None
            link = self._links[frozenset(event.link)]
            if event.action == "link_down" and link.phys_up:
                notice_at = link.cut(self.now)
                if notice_at is not None:
                    self._push(notice_at, "notice_down", link)
            elif event.action == "link_up" and not link.phys_up:
                self._push(link.mend(self.now), "connect", link)
        elif event.action == "node_down":
            assert event.node is not None
            self._node_down(event.node)
        elif event.action == "node_up":
            assert event.node is not None
            if self.cores[event.node] is None:
                self._node_up(event.node)
        elif event.action in ("briefing_start", "briefing_stop"):
            assert event.node is not None
            core = self.cores[event.node]
            if core is not None:
                out = core.start_briefing(self.now) if event.action == "briefing_start" else core.stop_briefing(self.now)
                self._apply(event.node, out)
        self._topology_changed()

    def _node_up(self, node: str) -> None:
        spec = self.specs[node]
        self.cores[node] = TreeNode(node, spec.priority, self.now, self.timers)
        self.forwarders.setdefault(node, Forwarder(node))
        self._apply(node, Output())
        for peer in self._adjacent[node]:
            link = self._links[frozenset((node, peer))]
            if link.phys_up and self.cores.get(peer) is not None:
                self._connect(link)

    def _node_down(self, node: str) -> None:
        if self.cores[node] is None:
            return
        self.cores[node] = None
        self._timer_at.pop(node, None)
        for peer in self._adjacent[node]:
            link = self._links[frozenset((node, peer))]
            if link.connected:
                link.close()
                core = self.cores.get(peer)
                if core is not None:
                    self._apply(peer, core.link_down(node, self.now))

    def _notice_down(self, link: SimLink) -> None:
        if not link.connected or link.down_notice_at is None or self.now < link.down_notice_at:
            return
        link.close()
        for end, other in ((link.spec.a, link.spec.b), (link.spec.b, link.spec.a)):
            core = self.cores.get(end)
            if core is not None:
                self._apply(end, core.link_down(other, self.now))

    def _connect(self, link: SimLink) -> None:
        a, b = link.spec.a, link.spec.b
        if link.connected or not link.phys_up or self.cores.get(a) is None or self.cores.get(b) is None:
            return
        link.open()
        spec = link.spec
        inputs = LinkCostInputs(rtt_s=2 * spec.delay_s, loss=spec.loss, capacity_bps=spec.bandwidth_bps, metered=spec.metered)
        for end, other in ((a, b), (b, a)):
            core = self.cores[end]
            assert core is not None
            self._apply(end, core.link_up(other, inputs, self.now))

    def _send(self, src: str, dst: str, service: str, data: bytes) -> None:
        link = self._links.get(frozenset((src, dst)))
        if link is None or not link.connected:
            self.messages_lost += 1
            return
        size = len(data) + self.scenario.wire_overhead_bytes
        self.messages_total += 1
        control = service == SERVICE_TREE
        steady = control and any(a <= self.now < b for a, b in self._steady)
        arrival = link.transmit(src, size, self.now, control=control, steady=steady, rng=self._rng,
                                drop_lost=self.scenario.drop_lost)
        if arrival is None:
            self.messages_lost += 1
            return
        self._push(arrival, "deliver", (link, link.generation, src, dst, service, data))

    def _deliver(self, link: SimLink, generation: int, src: str, dst: str, service: str, data: bytes) -> None:
        core = self.cores.get(dst)
        if link.generation != generation or not link.connected or core is None:
            self.messages_lost += 1
            return
        self.windows[-1].messages += 1
        if service == SERVICE_TREE:
            self._apply(dst, core.receive(src, data, self.now))
            return
        result = self.forwarders[dst].receive(src, data, core.tree_neighbours())
        if result.delivered is not None:
            frame = result.delivered
            index = self._bcast_index.get((frame.source, frame.seq))
            if index is not None:
                record = self.broadcasts[index]
                if dst in record.received:
                    record.duplicates += 1
                record.received.add(dst)
            for hook in self.deliveries:
                hook(dst, frame.source, frame.payload)
        for peer, out in result.sends:
            self._send(dst, peer, SERVICE_BROADCAST, out)

    def _apply(self, node: str, out: Output) -> None:
        for peer, data in out.sends:
            self._send(node, peer, SERVICE_TREE, data)
        changed: set[str] = set()
        for event in out.events:
            if isinstance(event, TreeChanged):
                changed.add(node)
                self.windows[-1].changes += 1
        core = self.cores.get(node)
        if core is not None:
            deadline = core.next_deadline()
            if self._timer_at.get(node) != deadline:
                self._timer_at[node] = deadline
                self._push(max(deadline, self.now), "timer", (node, deadline))
        if changed:
            self._observe(changed)

    def _observe(self, changed: set[str]) -> None:
        if self.check_loops and not self.loop_ever:
            for node in changed:
                cycle = find_loop(node, self.cores)  # type: ignore[arg-type]
                if cycle:
                    self.loop_ever = True
                    self.loop_first = (self.now, cycle)
                    break
        touched = set(changed)
        for node in changed:
            touched.update(self._adjacent[node])   # old/new parents and children are neighbours
        self.tracker.touch(touched)
        self._note_convergence()

    def _topology_changed(self) -> None:
        self.tracker.set_components(self.components())
        self._note_convergence()

    def _note_convergence(self) -> None:
        bad = bool(self.tracker.bad)
        if bad:
            self._converged_since = None
        elif self._converged_since is None:
            self._converged_since = self.now

    def finish_window(self, t: float) -> None:
        """Fill in the current window's figures as of `t` (safe to call again later)."""
        window = self.windows[-1]
        if self.converged and self._converged_since is not None:
            window.converged_at = max(self._converged_since, window.at)
            window.converged_after_s = round(window.converged_at - window.at, 6)
        live = {n: c for n, c in self.cores.items() if c is not None}
        roots = {c.root for c in live.values()}
        window.roots = len(roots)
        if live:
            best = max(live, key=lambda n: live[n].rank)
            window.root = best
            main = next(comp for comp in self.components() if best in comp)
            window.unreachable = sorted(set(live) - set(main))
        window.depth = self.depth()

    def _broadcast(self) -> None:
        work = self.scenario.workload
        assert work.broadcast_every_s
        self._push(self.now + work.broadcast_every_s, "broadcast", None)
        candidates = [n for n in (work.sources or self.cores) if self.cores.get(n) is not None]
        if not candidates:
            return
        source = self._rng.choice(candidates)
        core = self.cores[source]
        assert core is not None
        frame, sends = self.forwarders[source].originate(bytes(work.payload_bytes), core.tree_neighbours())
        component = next(comp for comp in self.components() if source in comp)
        stable = (self.converged and self.now + BROADCAST_SETTLE_S <= self.scenario.duration_s
                  and not any(self.now <= t < self.now + BROADCAST_SETTLE_S for t in self._event_times))
        self._bcast_index[(frame.source, frame.seq)] = len(self.broadcasts)
        self.broadcasts.append(BroadcastRecord(source, self.now, frozenset(component) - {source}, stable))
        for peer, data in sends:
            self._send(source, peer, SERVICE_BROADCAST, data)
