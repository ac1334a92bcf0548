"""Benchmark: 5-node testbed reconvergence (real processes in network namespaces) beside the simulator.

Builds a 5-node commune as real hosts (scripts/testbed; needs root, ip, tc, iptables), then, --repeat
times: kills the root (SIGKILL), starts it again, cuts the deepest node's parent link (it has a
second path over 4G), restores it. Each figure is seconds from the action until every node's
/api/status "tree" is whole and stays so for 1 s (polled every 0.1 s, so up to ~0.15 s of polling
lag). Returns count until the tree has its original shape again (not just whole), and include
the restarted process's start-up (shown on its own as root_process_start: until its API answers).
Baseline, same run: the simulator (`meshmeet simulate`) over the same topology and events.
Usage: python scripts/bench/testbed.py [--json] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from meshmeet.sim import run_scenario  # noqa: E402
from meshmeet.sim.scenario import load_scenario  # noqa: E402
from meshmeet.testbed import netns  # noqa: E402
from meshmeet.testbed.bed import Testbed  # noqa: E402
from meshmeet.testbed.plan import make_plan  # noqa: E402

RUN = "bench"
CUT = ("t1", "t3")
TOPOLOGY = {
    "name": "testbed-5",
    "nodes": [{"id": "hq", "role": "hq"}, {"id": "bk", "role": "backup"}, {"id": "t1"}, {"id": "t2"}, {"id": "t3"}],
    "links": [
        {"a": "hq", "b": "bk", "kind": "lan"}, {"a": "hq", "b": "t1", "kind": "lan"}, {"a": "bk", "b": "t1", "kind": "lan"},
        {"a": "bk", "b": "t2", "kind": "lan"}, {"a": "t1", "b": "t3", "kind": "lan"}, {"a": "t2", "b": "t3", "kind": "4g"},
    ],
}
EVENTS = [
    ("root_loss", {"action": "node_down", "node": "hq"}),
    ("root_return", {"action": "node_up", "node": "hq"}),
    ("parent_link_loss", {"action": "link_down", "link": list(CUT)}),
    ("link_return", {"action": "link_up", "link": list(CUT)}),
]


def simulated() -> dict[str, float | None]:
    scenario = {**TOPOLOGY, "duration_s": 30.0 * (len(EVENTS) + 1),
                "events": [{"at": 30.0 * (i + 1), **e} for i, (_, e) in enumerate(EVENTS)]}
    report = run_scenario(scenario)
    rows = report["events"][1:]
    return {name: row["converged_after_s"] for (name, _), row in zip(EVENTS, rows)}


def testbed(repeat: int, work: Path) -> tuple[dict[str, list[float | None]], float | None, dict]:
    bed = Testbed(make_plan(load_scenario(TOPOLOGY), RUN), work)
    out: dict[str, list[float | None]] = {name: [] for name, _ in EVENTS}
    out["node_start"] = []
    try:
        bed.prepare()
        started = time.monotonic()
        bed.up()
        start_s = bed.wait_whole("start", since=started).seconds
        parents = {n: t["parent"] for n, t in bed.trees().items()}
        for _ in range(repeat):
            for name, event in EVENTS:
                t0 = time.monotonic()
                if event["action"] == "node_down":
                    bed.stop_node(event["node"])
                elif event["action"] == "node_up":
                    bed.start_node(event["node"])
                    out["node_start"].append(bed.wait_api(event["node"]))
                else:
                    bed.set_link(*event["link"], up=event["action"] == "link_up")
                # After a return, wait for the tree's original shape (the restored link carries t3 again).
                shape = parents if name in ("root_return", "link_return") else None
                out[name].append(bed.wait_whole(name, since=t0, parents=shape).seconds)
    finally:
        bed.down()
    return out, start_s, parents


def _median(values: list[float | None]) -> float | None:
    done = [v for v in values if v is not None]
    return round(statistics.median(done), 3) if done and len(done) == len(values) else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    why = netns.missing_requirements()
    if why:
        print(f"testbed benchmark cannot run here: {why}", file=sys.stderr)
        return 2
    sim = simulated()
    with tempfile.TemporaryDirectory(prefix="mm-bench-testbed-") as tmp:
        real, start_s, parents = testbed(args.repeat, Path(tmp))
    rows = [{"event": name, "testbed_s": real[name], "testbed_median_s": _median(real[name]), "simulated_s": sim[name]}
            for name, _ in EVENTS]
    rows.insert(2, {"event": "root_process_start", "testbed_s": real["node_start"],
                    "testbed_median_s": _median(real["node_start"]), "simulated_s": None})
    report = {"nodes": len(TOPOLOGY["nodes"]), "links": len(TOPOLOGY["links"]), "repeat": args.repeat,
              "start_s": start_s, "parents_at_start": parents, "cut_link": "~".join(CUT), "events": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"Testbed reconvergence, {report['nodes']} real nodes in namespaces (median of {args.repeat}), "
          "beside the simulator (baseline, same topology and events)")
    print(f"{'event':<18} {'testbed s':>10} {'simulated s':>12}   all testbed runs")
    for r in rows:
        med = "—" if r["testbed_median_s"] is None else f"{r['testbed_median_s']:.3f}"
        sim_s = "—" if r["simulated_s"] is None else f"{r['simulated_s']:.3f}"
        runs = ", ".join("—" if v is None else f"{v:.2f}" for v in r["testbed_s"])
        print(f"{r['event']:<18} {med:>10} {sim_s:>12}   {runs}")
    print(f"(tree whole at start after {start_s} s; parents: {parents})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
