"""Benchmark: relay-tree reconvergence and steady-state control traffic, in simulation.

For 21, 126 and 1,000 nodes (the shipped scenario topologies, without their scripted events):
  - root loss: the root process stops (its links close at once); time until the tree is whole again
  - root return: it starts again and takes the root back
  - parent-link loss: the deepest node's parent link is cut; time from the cut (including the
    link's loss detection, detect_s) and from the detection
  - baseline, same run: one broadcast flood from the new root over the healed tree (the time a
    single perfect wave needs; reconvergence / flood says how many "waves" the protocol used)
  - steady control bytes per link per minute, against a baseline of the same protocol at
    Babel's default 4 s update cadence, measured in the same run.
Usage: python scripts/bench/tree.py [--json] [--sizes 21,126,1000]
This script must never be run by the unit tests (it takes tens of seconds on 1,000 nodes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scenarios"))

from generate import commune_21, commune_126, province_1000  # noqa: E402

from meshmeet.sim import EventSpec, Simulator, load_scenario  # noqa: E402
from meshmeet.tree.outputs import TreeTimers  # noqa: E402

GOAL_BYTES_PER_LINK_PER_MIN = 1024
GOAL_FAILOVER_S = 2.0
QUIET_FROM_S, QUIET_TO_S = 15.0, 75.0          # steady-state measurement window (no events)
ROOT_LOSS_AT_S, ROOT_BACK_AT_S, LINK_CUT_AT_S, END_S = 75.0, 125.0, 175.0, 225.0
BASELINE_TIMERS = TreeTimers(root_refresh_s=4.0, root_timeout_s=14.0)
BUILDERS = {21: commune_21, 126: commune_126, 1000: province_1000}


def _topology(size: int) -> dict[str, Any]:
    raw = BUILDERS[size]()
    return {**raw, "events": [], "workload": {}, "duration_s": END_S}


def _control_bytes(sim: Simulator) -> list[int]:
    return [row["control_bytes"] for row in sim.link_loads()]


def _steady(sim: Simulator) -> tuple[float, float]:
    sim.run_until(QUIET_FROM_S)
    before = _control_bytes(sim)
    sim.run_until(QUIET_TO_S)
    minutes = (QUIET_TO_S - QUIET_FROM_S) / 60.0
    per_link = [(b - a) / minutes for a, b in zip(before, _control_bytes(sim))]
    return sum(per_link) / len(per_link), max(per_link)


def _window_after(sim: Simulator, label: str) -> float | None:
    sim.finish_window(sim.now)
    window = next(w for w in reversed(sim.windows) if w.label == label)
    return window.converged_after_s


def _flood_time(sim: Simulator, source: str) -> float:
    """Originate one broadcast at `source` and return how long until every node of its component has it."""
    core = sim.cores[source]
    assert core is not None
    component = next(c for c in sim.components() if source in c)
    got: dict[str, float] = {}
    sim.deliveries.append(lambda node, src, payload: got.setdefault(node, sim.now))
    start = sim.now
    _, sends = sim.forwarders[source].originate(b"\0" * 160, core.tree_neighbours())
    for peer, data in sends:
        sim._send(source, peer, "bcast", data)
    sim.run_until(start + 5.0)
    sim.deliveries.clear()
    assert len(got) == len(component) - 1, "flood did not reach everyone"
    return max(got.values()) - start


def _deepest_cuttable(sim: Simulator) -> tuple[str, str]:
    depth: dict[str, int] = {}
    for node, core in sim.cores.items():
        d, cur = 0, core
        while cur is not None and cur.parent is not None:
            d += 1
            cur = sim.cores[cur.parent]
        depth[node] = d
    for node in sorted(depth, key=lambda n: (-depth[n], n)):
        parent = sim.cores[node].parent  # type: ignore[union-attr]
        neighbours = [m for m in sim._adjacent[node] if m != parent]
        if parent is not None and neighbours:
            return node, parent
    raise RuntimeError("no node with an alternative path")


def bench_size(size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    scenario = load_scenario(_topology(size))
    started = time.perf_counter()
    sim = Simulator(scenario)
    mean, peak = _steady(sim)
    root = max(sim.cores, key=lambda n: sim.cores[n].rank)  # type: ignore[union-attr]

    sim.inject(EventSpec(ROOT_LOSS_AT_S, "node_down", node=root))
    sim.run_until(ROOT_LOSS_AT_S + 30.0)
    root_loss = _window_after(sim, f"node_down {root}")
    live = [n for n, c in sim.cores.items() if c is not None]
    new_root = max(live, key=lambda n: sim.cores[n].rank)  # type: ignore[union-attr]
    flood = _flood_time(sim, new_root)

    sim.inject(EventSpec(ROOT_BACK_AT_S, "node_up", node=root))
    sim.run_until(ROOT_BACK_AT_S + 30.0)
    root_back = _window_after(sim, f"node_up {root}")

    node, parent = _deepest_cuttable(sim)
    detect = sim.link_of(node, parent).detect_s
    sim.inject(EventSpec(LINK_CUT_AT_S, "link_down", link=(parent, node)))
    sim.run_until(END_S)
    link_loss = _window_after(sim, f"link_down {parent}~{node}")
    wall = time.perf_counter() - started

    baseline = Simulator(scenario, BASELINE_TIMERS)
    base_mean, base_peak = _steady(baseline)
    reconv = {
        "nodes": size,
        "root_loss_s": root_loss,
        "root_return_s": root_back,
        "parent_link_loss_s": link_loss,
        "parent_link_loss_after_detect_s": None if link_loss is None else round(link_loss - detect, 6),
        "detect_s": detect,
        "flood_baseline_s": round(flood, 6),
        "new_root": new_root,
        "cut_link": f"{parent}~{node}",
        "loop_ever": sim.loop_ever,
        "messages": sim.messages_total,
        "wall_s": round(wall, 2),
    }
    steady = {
        "nodes": size,
        "links": len(scenario.links),
        "bytes_per_link_per_min_mean": round(mean, 1),
        "bytes_per_link_per_min_max": round(peak, 1),
        "baseline_4s_refresh_mean": round(base_mean, 1),
        "baseline_4s_refresh_max": round(base_peak, 1),
        "wire_overhead_bytes_per_message": scenario.wire_overhead_bytes,
    }
    return reconv, steady


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", default="21,126,1000")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = [bench_size(size) for size in sizes]
    report = {
        "reconvergence": [r for r, _ in results],
        "steady_control": [s for _, s in results],
        "goal_failover_s": GOAL_FAILOVER_S,
        "goal_bytes_per_link_per_min": GOAL_BYTES_PER_LINK_PER_MIN,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("Reconvergence in simulation (seconds of simulated time; goal after root loss: "
          f"{GOAL_FAILOVER_S} s on LAN)")
    print(f"{'nodes':>6} {'root loss':>10} {'root back':>10} {'link cut':>9} {'(after detect)':>15} "
          f"{'flood baseline':>15} {'loops':>6} {'wall s':>7}")
    for r in report["reconvergence"]:
        print(f"{r['nodes']:>6} {_s(r['root_loss_s']):>10} {_s(r['root_return_s']):>10} {_s(r['parent_link_loss_s']):>9} "
              f"{_s(r['parent_link_loss_after_detect_s']):>15} {_s(r['flood_baseline_s']):>15} "
              f"{'yes' if r['loop_ever'] else 'no':>6} {r['wall_s']:>7}")
    print()
    print(f"Steady-state control traffic per link (B/min, incl. {report['steady_control'][0]['wire_overhead_bytes_per_message']}"
          f" B wire overhead per message; goal < {GOAL_BYTES_PER_LINK_PER_MIN})")
    print(f"{'nodes':>6} {'links':>6} {'mean':>8} {'max':>8} {'baseline 4 s mean':>18} {'baseline max':>13}")
    for s in report["steady_control"]:
        print(f"{s['nodes']:>6} {s['links']:>6} {s['bytes_per_link_per_min_mean']:>8} {s['bytes_per_link_per_min_max']:>8} "
              f"{s['baseline_4s_refresh_mean']:>18} {s['baseline_4s_refresh_max']:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
