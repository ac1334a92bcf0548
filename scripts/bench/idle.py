"""Benchmark: what an idle node costs in CPU (issue 16: 22 idle supervised nodes used 1.47 of 2 cores).

Starts a commune of N real nodes on loopback (HQ + N-1 halls joined through HQ, each run by
`meshmeet supervise` from its own release root, no mDNS, no netns), lets it settle, then reads
the CPU time of every process's threads (/proc/PID/task/*/schedstat, nanoseconds; the 10 ms
ticks of /proc/PID/stat beside them in the JSON) over a quiet window (no meeting, no
browser, no API calls). Figures per node: CPU ms per second of the supervisor and of the node
process (all its threads: trio, the web gateway's asyncio thread, workers).
Baseline, same run: an idle process of the same stack doing nothing — a trio main loop that
sleeps forever plus an aiohttp server on its own asyncio thread (what a node is before any
service), as `python -c`. (Reticulum's rnsd would be the other baseline; it is not installed.)
This script must never send anything to the nodes during the window (it would not be idle).
Usage: python scripts/bench/idle.py [--nodes 1 7] [--settle-s 10] [--window-s 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from nodeproc import make_commune, meshmeet  # noqa: E402
from releaseproc import SupervisedNode  # noqa: E402

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")

BASELINE_CODE = r"""
import asyncio, threading, trio
from aiohttp import web

def web_thread():
    async def main():
        app = web.Application()
        app.router.add_get("/", lambda r: web.Response(text="ok"))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        await asyncio.Event().wait()
    asyncio.run(main())

threading.Thread(target=web_thread, daemon=True).start()
trio.run(trio.sleep_forever)
"""


def cpu_s(pid: int) -> float:
    """User + system CPU of a process (all its threads, ended ones too), in seconds; clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime (fields 14, 15)


def run_ns(pid: int) -> dict[int, int]:
    """Nanoseconds each live thread of a process has run (schedstat: exact, unlike 10 ms ticks)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass  # the thread ended meanwhile
    return out


def ms_per_s(before: dict[int, int], after: dict[int, int], wall_s: float) -> float:
    """A thread that ended inside the window loses its share (trio's idle workers end after 10 s)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e6 / wall_s


def node_pid(node: SupervisedNode) -> int:
    return int(json.loads((node.data_dir / "run" / "node.json").read_text())["pid"])


def measure(pids: dict[str, int], window_s: float) -> tuple[dict[str, float], dict[str, float]]:
    """CPU ms per wall second of each process over the window: (schedstat, clock ticks)."""
    start = {k: (run_ns(p), cpu_s(p)) for k, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(window_s)
    wall = time.monotonic() - t0
    end = {k: (run_ns(p), cpu_s(p)) for k, p in pids.items()}
    exact = {k: round(ms_per_s(start[k][0], end[k][0], wall), 3) for k in pids}
    ticks = {k: round((end[k][1] - start[k][1]) * 1000.0 / wall, 2) for k in pids}
    return exact, ticks


def commune(base: Path, n: int) -> list[SupervisedNode]:
    hq_dir, invites = make_commune(base, n - 1)
    hq = SupervisedNode(hq_dir, base / "root-hq")
    nodes = [hq]
    try:
        hq.wait_up()
        for i, (d, code) in enumerate(invites):
            meshmeet("join", "--data-dir", str(d), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
            nodes.append(SupervisedNode(d, base / f"root-hall{i + 1}", peers=[hq.mesh_port]))
        for node in nodes[1:]:
            node.wait_up()
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def links_up(nodes: list[SupervisedNode]) -> bool:
    want = len(nodes) - 1
    up = [sum(1 for lk in n.status()["links"] if lk["state"] == "up") for n in nodes]
    return up[0] >= want and all(u >= 1 for u in up[1:])


def run_one(n: int, settle_s: float, window_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"idle{n}-") as tmp:
        base = Path(tmp)
        baseline = subprocess.Popen([sys.executable, "-c", BASELINE_CODE])
        nodes = commune(base, n)
        try:
            deadline = time.monotonic() + 120
            while not links_up(nodes) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(settle_s)
            pids = {"baseline": baseline.pid}
            for i, node in enumerate(nodes):
                name = "hq" if i == 0 else f"hall{i}"
                pids[f"{name}/supervise"] = node.proc.pid
                pids[f"{name}/node"] = node_pid(node)
            per, ticks = measure(pids, window_s)
        finally:
            for node in nodes:
                node.stop()
            baseline.terminate()
            baseline.wait()
    base_ms = max(per["baseline"], 0.001)  # an idle trio + aiohttp process sleeps: ~0 (1 us/s floor, no division by 0)
    sup = [v for k, v in per.items() if k.endswith("/supervise")]
    nod = [v for k, v in per.items() if k.endswith("/node")]
    return {
        "nodes": n, "window_s": window_s, "baseline_ms_per_s": per["baseline"],
        "supervise_ms_per_s_mean": round(sum(sup) / n, 2), "node_ms_per_s_mean": round(sum(nod) / n, 2),
        "node_ratio_to_baseline": round(sum(nod) / n / base_ms),
        "total_cores": round((sum(sup) + sum(nod)) / 1000.0, 3),
        "per_process_ms_per_s": per,
        "per_process_ms_per_s_ticks": ticks,  # /proc/PID/stat (10 ms resolution; counts ended threads)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 7])
    parser.add_argument("--settle-s", type=float, default=10.0)
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run_one(n, args.settle_s, args.window_s) for n in args.nodes]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"Idle CPU (ms of CPU per wall second, {args.window_s:.0f} s window after {args.settle_s:.0f} s settle)")
    print(f"{'nodes':>5} {'baseline':>9} {'supervise':>10} {'node':>8} {'node/base':>10} {'all cores':>10}")
    for r in results:
        print(f"{r['nodes']:>5} {r['baseline_ms_per_s']:>9} {r['supervise_ms_per_s_mean']:>10} "
              f"{r['node_ms_per_s_mean']:>8} {r['node_ratio_to_baseline']:>10} {r['total_cores']:>10}")
    for r in results:
        print(f"-- {r['nodes']} nodes: " + ", ".join(f"{k} {v}" for k, v in r["per_process_ms_per_s"].items()))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
