"""The same tree cores under trio's MockClock (virtual time): they agree with the discrete-event run."""

from __future__ import annotations

import trio

from meshmeet.sim import Simulator, load_scenario
from meshmeet.sim.trio_net import TrioNet

SCENARIO = {
    "name": "five", "duration_s": 30.0, "seed": 5,
    "nodes": [{"id": "hq", "role": "hq"}, {"id": "b1", "role": "backup"}, {"id": "h1"}, {"id": "h2"}, {"id": "h3"}],
    "links": [
        {"a": "hq", "b": "b1", "kind": "lan"}, {"a": "hq", "b": "h1", "kind": "lan"},
        {"a": "hq", "b": "h2", "kind": "4g"}, {"a": "b1", "b": "h2", "kind": "lan"},
        {"a": "h1", "b": "h3", "kind": "lan"}, {"a": "b1", "b": "h3", "kind": "fibre"},
    ],
    "events": [{"at": 10.0, "action": "node_down", "node": "hq"}],
}


def tree_of(cores: dict) -> dict[str, tuple[str, str | None]]:
    return {name: (core.root, core.parent) for name, core in cores.items() if core is not None}


async def test_root_loss_under_mock_clock_matches_the_simulator(autojump_clock: trio.abc.Clock) -> None:
    scenario = load_scenario(SCENARIO)
    async with trio.open_nursery() as nursery:
        net = TrioNet(scenario, nursery)
        for node in scenario.nodes:
            net.start_node(node.id)
        await trio.sleep(5.0)
        before = tree_of({n: net.core(n) for n in net.nodes})
        assert {root for root, _ in before.values()} == {"hq"}
        killed_at = trio.current_time()
        net.stop_node("hq")
        while {net.core(n).root for n in net.nodes} != {"b1"}:    # type: ignore[union-attr]
            await trio.sleep(0.001)
        failover_s = trio.current_time() - killed_at              # virtual seconds, deterministic
        await trio.sleep(5.0)
        after = tree_of({n: net.core(n) for n in net.nodes})
        nursery.cancel_scope.cancel()

    assert failover_s < 2.0                                       # the LAN goal, in virtual time
    sim = Simulator(scenario)
    sim.run_until(5.0)
    assert tree_of(sim.cores) == before
    sim.run_until(20.0)
    assert tree_of(sim.cores) == after
    assert not sim.loop_ever
