"""Hypothesis over random topologies and failure schedules, running the real tree cores in the simulator.

Properties: no parent-pointer loop after any delivered message; once links are stable every live
component agrees on its best root with a whole tree; every broadcast sent while the tree was whole
reaches every node of the source's component exactly once.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshmeet.sim import Simulator, load_scenario
from meshmeet.sim.observe import any_loop

KINDS = ["lan", "fibre", "4g", "lora"]
SETTLE_S = 220.0   # > hold-down max (64 s) + root timeout (35 s) + LoRa detection (30 s), with margin


@st.composite
def scenarios(draw: st.DrawFn, max_nodes: int = 9, max_events: int = 8) -> dict:
    n = draw(st.integers(2, max_nodes))
    ids = [f"n{i}" for i in range(n)]
    nodes = [{"id": i, "priority": draw(st.sampled_from([1, 10, 10, 50, 100]))} for i in ids]
    pairs = [(a, b) for x, a in enumerate(ids) for b in ids[x + 1:]]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=min(len(pairs), 2 * n), unique=True))
    links = []
    for a, b in chosen:
        kind = draw(st.sampled_from(KINDS))
        link = {"a": a, "b": b, "kind": kind}
        if kind == "lora":
            link["loss"] = draw(st.sampled_from([0.0, 0.05, 0.3]))
        links.append(link)
    events = []
    for _ in range(draw(st.integers(0, max_events))):
        at = draw(st.floats(1.0, 60.0, allow_nan=False))
        kind = draw(st.sampled_from(["link_down", "link_up", "node_down", "node_up", "briefing_start", "briefing_stop"]))
        if kind.startswith("link"):
            a, b = draw(st.sampled_from(chosen))
            events.append({"at": at, "action": kind, "link": [a, b]})
        else:
            events.append({"at": at, "action": kind, "node": draw(st.sampled_from(ids))})
    last = max((e["at"] for e in events), default=0.0)
    return {
        "name": "random", "seed": draw(st.integers(0, 2**16)), "duration_s": last + SETTLE_S,
        "nodes": nodes, "links": links, "events": events,
        "workload": {"broadcast_every_s": 7.0, "payload_bytes": 16},
        "drop_lost": draw(st.booleans()),
    }


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_schedules_never_loop_and_converge(raw: dict) -> None:
    sim = Simulator(load_scenario(raw))
    sim.run()
    assert not sim.loop_ever, sim.loop_first
    assert any_loop(sim.cores) is None  # type: ignore[arg-type]
    for record in sim.broadcasts:
        assert record.duplicates == 0
    if sim.scenario.drop_lost and any(link.loss > 0 for link in sim.scenario.links):
        return      # messages really lost: safety must hold, but the latest update may be the lost one
    assert sim.converged, sorted(sim.tracker.bad)
    for component in sim.components():
        best = max(component, key=lambda n: sim.cores[n].rank)  # type: ignore[union-attr]
        for node in component:
            core = sim.cores[node]
            assert core is not None and core.root == best
            hops, cur = 0, node
            while cur != best:                      # a parent chain over live links to the root
                parent = sim.cores[cur].parent      # type: ignore[union-attr]
                assert parent is not None and sim.link_phys_up(cur, parent)
                cur, hops = parent, hops + 1
                assert hops <= len(component)
    for record in sim.broadcasts:
        if record.stable:
            assert record.received == set(record.expected), (record.source, record.sent_at)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_incremental_loop_check_matches_full_check(raw: dict) -> None:
    """The simulator checks only changed nodes; here every node is checked after every step."""
    sim = Simulator(load_scenario(raw))
    original = sim._observe

    def full(changed: set[str]) -> None:
        assert any_loop(sim.cores) is None  # type: ignore[arg-type]
        original(changed)

    sim._observe = full  # type: ignore[method-assign]
    sim.run()
    assert not sim.loop_ever
