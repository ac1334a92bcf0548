"""Benchmark: a new release reaching every node of a commune over the mesh (real processes in
network namespaces, each node run by `meshmeet supervise` from its own release root).

HQ publishes a development bundle (the source tree plus incompressible padding, --bundle-mib)
with `meshmeet release publish`; every node fetches it as documents, verifies, installs and
restarts into it. Figures:
  all_running_s     publish -> every node's /api/status reports the new version (healthy)
  hq_tx_bytes       bytes that left HQ's interfaces meanwhile (all its links, restarts included)
  api_down_max_s    the longest gap between two answers of any node's /api/status (polled every 0.2 s)
Baseline, same run, same link: one plain TCP transfer of the bundle over HQ's uplink (HQ -> t1).
Goals (issue 16): all_running_s <= 1.5 x baseline, hq_tx_bytes <= 2 x bundle, api_down_max_s <= 10.
Topology (default `update-7`): HQ has one 10 Mbit/s uplink (to t1); halls t1..t6 on LAN and one
4G hop. `--nodes 21`: `update-21`, the map of scripts/scenarios/commune-21.toml (HQ linked to
18 halls, halls meshed among themselves) with each of HQ's links capped at 10 Mbit/s and without
its LoRa links (a radio link carries no sync; without HQ the map falls into 3 parts, so HQ must
send the bundle 3 times at least); baseline over HQ -> thon-01.
Run under `flock /tmp/meshmeet-netns.lock` (needs root, ip, tc).
Usage: python scripts/bench/update.py [--json] [--bundle-mib 32] [--nodes 7|21]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from meshmeet import __version__  # noqa: E402
from meshmeet.release.devbundle import make_source_bundle  # noqa: E402
from meshmeet.sim.scenario import load_scenario  # noqa: E402
from meshmeet.testbed import netns  # noqa: E402
from meshmeet.testbed.bed import Testbed  # noqa: E402
from meshmeet.testbed.plan import HTTP_HOST, HTTP_PORT, make_plan  # noqa: E402

RUN = "upd"
UPLINK_BPS = 10e6
POLL_S = 0.2
GUARD_S = 900.0
BASELINE_PORT = 7999
TOPOLOGY = {
    "name": "update-7",
    "nodes": [{"id": "hq", "role": "hq"}] + [{"id": f"t{i}"} for i in range(1, 7)],
    "links": [
        {"a": "hq", "b": "t1", "kind": "fibre", "bandwidth_bps": UPLINK_BPS, "delay_s": 0.01},
        {"a": "t1", "b": "t2", "kind": "lan"}, {"a": "t1", "b": "t3", "kind": "lan"},
        {"a": "t2", "b": "t3", "kind": "lan"}, {"a": "t2", "b": "t4", "kind": "lan"},
        {"a": "t3", "b": "t5", "kind": "lan"}, {"a": "t4", "b": "t6", "kind": "4g", "loss": 0.0},
    ],
}


COMMUNE_21 = Path(__file__).resolve().parents[1] / "scenarios" / "commune-21.toml"


def topology(nodes: int) -> dict:
    """The bench's map: update-7 (above) or update-21 (commune-21 without LoRa, HQ links <= the uplink)."""
    if nodes == 7:
        return TOPOLOGY
    import tomllib
    data = tomllib.loads(COMMUNE_21.read_text(encoding="utf-8"))
    links = []
    for link in data["links"]:
        if link.get("kind") == "lora":
            continue
        link = {k: v for k, v in link.items() if k in ("a", "b", "kind", "bandwidth_bps", "delay_s", "loss")}
        if "hq" in (link["a"], link["b"]):
            link["bandwidth_bps"] = min(link.get("bandwidth_bps", UPLINK_BPS), UPLINK_BPS)
        links.append(link)
    return {"name": "update-21", "nodes": [{k: v for k, v in n.items() if k in ("id", "role")} for n in data["nodes"]],
            "links": links}


def _next_version(version: str) -> str:
    parts = [int(p) for p in version.split(".")]
    parts[-1] += 1
    return ".".join(map(str, parts))


class SupervisedBed(Testbed):
    """The testbed, with each node run by `meshmeet supervise --root WORK/roots/NODE`."""

    def start_node(self, node: str) -> None:
        host = self.plan.host(node)
        root = self.work / "roots" / node
        proc = self._spawn(f"node-{node}", host.netns, ["-m", "meshmeet", "supervise", "--root", str(root),
                                                        "--data-dir", str(self.data_dir(node))])
        self.procs[node] = proc
        self.pids[f"node:{node}"] = proc.pid
        self.stopped.discard(node)
        self._save_state()

    def cli_in(self, node: str, *args: str, timeout: float = 600) -> str:
        argv = ["ip", "netns", "exec", self.plan.host(node).netns, self.python, "-m", "meshmeet", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env)
        if proc.returncode != 0:
            raise RuntimeError(f"meshmeet {' '.join(args[:2])} failed: {proc.stderr.strip()}")
        return proc.stdout


def tx_bytes(bed: Testbed, node: str) -> int:
    def read() -> int:
        total = 0
        # /proc/thread-self/net: this thread's namespace (/sys/class/net shows the mount's)
        for line in Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]:
            name, fields = line.split(":", 1)
            if name.strip() != "lo":
                total += int(fields.split()[8])
        return total
    return netns.in_netns(bed.plan.host(node).netns, read)


def baseline_s(bed: Testbed, size: int, peer: str) -> float:
    """One plain TCP transfer of `size` bytes from HQ to `peer` over the uplink."""
    link = bed.plan.link("hq", peer)
    addr = link.addr_of(peer)
    ready, done = threading.Event(), {}

    def serve() -> None:
        with socket.create_server((addr, BASELINE_PORT)) as srv:
            ready.set()
            conn, _ = srv.accept()
            got = 0
            with conn:
                while chunk := conn.recv(1 << 16):
                    got += len(chunk)
            done["got"] = got

    t = threading.Thread(target=netns.in_netns, args=(bed.plan.host(peer).netns, serve), daemon=True)
    t.start()
    ready.wait(10)

    def send() -> float:
        block = bytes(1 << 16)
        start = time.monotonic()
        with socket.create_connection((addr, BASELINE_PORT), timeout=60) as s:
            left = size
            while left > 0:
                n = min(left, len(block))
                s.sendall(block[:n])
                left -= n
            s.shutdown(socket.SHUT_WR)
            s.recv(1)
        return time.monotonic() - start
    elapsed = netns.in_netns(bed.plan.host("hq").netns, send)
    t.join(30)
    return round(elapsed, 3)


class ApiWatch:
    """Polls every node's /api/status from inside its namespace; longest gap between answers."""

    def __init__(self, bed: Testbed, nodes: list[str], new: str) -> None:
        self.bed, self.stop = bed, threading.Event()
        self.last_ok: dict[str, float] = {}
        self.max_gap: dict[str, float] = {n: 0.0 for n in nodes}
        self.version: dict[str, str | None] = {n: None for n in nodes}
        self.seen: dict[str, dict[str, float]] = {}  # node -> release state -> first seen (wall clock)
        self.new = new
        self.threads = [threading.Thread(target=netns.in_netns, args=(bed.plan.host(n).netns, self._poll, n),
                                         daemon=True) for n in nodes]

    def _poll(self, node: str) -> None:
        import urllib.request
        url = f"http://{HTTP_HOST}:{HTTP_PORT}/api/status"
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    st = json.loads(r.read())
                now = time.monotonic()
                if node in self.last_ok:
                    self.max_gap[node] = max(self.max_gap[node], now - self.last_ok[node])
                self.last_ok[node] = now
                rel = st.get("release") or {}
                self.version[node] = rel.get("version")
                state = rel.get("state")
                detail = str(rel.get("detail") or "")
                if state == "fetching" and ": 0/" not in detail and "chunks" in detail:
                    state = "receiving"  # at least one chunk held
                if state and state not in self.seen.setdefault(node, {}):
                    self.seen[node][state] = time.time()
                if self.version[node] == self.new and "running_new" not in self.seen[node]:
                    self.seen[node]["running_new"] = time.time()
            except (OSError, ValueError):
                pass
            time.sleep(POLL_S)

    def start(self) -> None:
        for t in self.threads:
            t.start()


# Per node, seconds after publish: first seen in its status (the bench polls every POLL_S) as
# receiving (a chunk held) / installed / switching, and from ROOT/state.json "timeline" (written
# as it happens by the node and its supervisor): held (bundle whole; noticed within the release
# service's check period), verified (size + SHA-256), installed, requested (restart asked),
# at_gate (new version loaded), switched (old stopped, gate open), running_new (its API answers
# with the new version), healthy (the supervisor's check passed).
TIMELINE_STEPS = ("receiving", "held", "verified", "installed", "requested", "at_gate", "switched",
                  "running_new", "healthy")


def node_timeline(bed: Testbed, node: str, version: str, t0_wall: float, seen: dict[str, float]) -> dict:
    try:
        marks = json.loads((bed.work / "roots" / node / "state.json").read_text()).get("timeline", {}).get(version, {})
    except (OSError, ValueError):
        marks = {}
    at = {**{k: v for k, v in seen.items() if k in ("receiving", "running_new")}, **marks}
    return {k: round(at[k] - t0_wall, 2) for k in TIMELINE_STEPS if k in at}


def cpu_seconds() -> tuple[float, float]:
    """(busy, total) jiffies-as-seconds of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / hz, sum(fields) / hz


def our_cpu_s(bed: Testbed) -> float:
    """CPU seconds used by this run's processes: supervisors, nodes, link emulators and their
    children (reaped children counted through their parents' cutime/cstime)."""
    hz, seen, todo, total = os.sysconf("SC_CLK_TCK"), set(), list(bed.pids.values()), 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / hz


def run(bundle_mib: int, work: Path, n_nodes: int = 7) -> dict:
    topo = topology(n_nodes)
    bed = SupervisedBed(make_plan(load_scenario(topo), RUN), work)
    nodes = [h.node for h in bed.plan.hosts]
    new = _next_version(__version__)
    bundle = make_source_bundle(work / "bundle.tar", new, pad_bytes=bundle_mib << 20)
    size = bundle.stat().st_size
    try:
        bed.prepare()
        bed.up()
        for n in nodes:
            bed.wait_api(n, guard_s=180)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not all(
                any(l["state"] == "up" for l in bed.status(n)["links"]) for n in nodes):
            time.sleep(0.5)
        base = baseline_s(bed, size, "t1" if n_nodes == 7 else "thon-01")
        watch = ApiWatch(bed, nodes, new)
        watch.start()
        time.sleep(2)
        tx0 = tx_bytes(bed, "hq")
        t0, t0_wall = time.monotonic(), time.time()
        busy0, ours0 = cpu_seconds()[0], our_cpu_s(bed)
        bed.cli_in("hq", "release", "publish", str(bundle), "--data-dir", str(bed.data_dir("hq")), "--version", new)
        reached: dict[str, float] = {}
        while time.monotonic() - t0 < GUARD_S and len(reached) < len(nodes):
            for n in nodes:
                if n not in reached and watch.version[n] == new:
                    reached[n] = round(time.monotonic() - t0, 2)
            time.sleep(0.2)
        all_s = max(reached.values()) if len(reached) == len(nodes) else None
        wall = time.monotonic() - t0
        cpu = {"cores": os.cpu_count(), "machine_busy_cores": round((cpu_seconds()[0] - busy0) / wall, 2),
               "run_processes_cores": round((our_cpu_s(bed) - ours0) / wall, 2),
               "loadavg_1m_at_end": float(Path("/proc/loadavg").read_text().split()[0])}
        tx = tx_bytes(bed, "hq") - tx0
        time.sleep(3)  # a last gap closes
        watch.stop.set()
        down = {n: round(g, 2) for n, g in watch.max_gap.items()}
        timeline = {n: node_timeline(bed, n, new, t0_wall, watch.seen.get(n, {})) for n in nodes}
    finally:
        bed.down()
    return {"topology": topo["name"], "nodes": len(nodes), "uplink_bps": UPLINK_BPS, "bundle_bytes": size,
            "new_version": new, "baseline_send_once_s": base, "all_running_s": all_s,
            "all_running_ratio": round(all_s / base, 2) if all_s else None,
            "per_node_running_s": reached, "hq_tx_bytes": tx, "hq_tx_ratio": round(tx / size, 2),
            "api_down_max_s": max(down.values()), "api_down_s": down,
            "timeline_steps": list(TIMELINE_STEPS), "timeline_s": timeline,
            "cpu": cpu,
            "goals": {"all_running_ratio": 1.5, "hq_tx_ratio": 2.0, "api_down_max_s": 10.0}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--bundle-mib", type=int, default=32)
    parser.add_argument("--nodes", type=int, choices=(7, 21), default=7, help="update-7 or update-21 (commune-21)")
    parser.add_argument("--work", help="a new directory to run in and keep (logs, release roots)")
    args = parser.parse_args(argv)
    why = netns.missing_requirements()
    if why:
        print(f"update benchmark cannot run here: {why}", file=sys.stderr)
        return 2
    if args.work:  # kept afterwards: node logs in WORK/logs, release roots in WORK/roots
        Path(args.work).mkdir(parents=True, exist_ok=False)
        r = run(args.bundle_mib, Path(args.work).resolve(), args.nodes)
    else:
        with tempfile.TemporaryDirectory(prefix="mm-bench-update-") as tmp:
            r = run(args.bundle_mib, Path(tmp), args.nodes)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"Update over the mesh: {r['nodes']} real nodes ({r['topology']}), bundle {r['bundle_bytes'] / 2**20:.1f} MiB, "
          f"HQ uplink {r['uplink_bps'] / 1e6:.0f} Mbit/s")
    print(f"{'figure':<28} {'value':>10} {'ratio':>8} {'goal':>8}")
    print(f"{'baseline: send once (s)':<28} {r['baseline_send_once_s']:>10} {'1.00':>8} {'':>8}")
    print(f"{'every node on new (s)':<28} {str(r['all_running_s']):>10} {str(r['all_running_ratio']):>8} {'<=1.5':>8}")
    print(f"{'bytes HQ sent':<28} {r['hq_tx_bytes']:>10} {r['hq_tx_ratio']:>8} {'<=2.0':>8}")
    print(f"{'longest API downtime (s)':<28} {r['api_down_max_s']:>10} {'':>8} {'<=10':>8}")
    print(f"cpu during the update: {r['cpu']}")
    print(f"{'node':<10}" + "".join(f"{k[:11]:>12}" for k in r["timeline_steps"]))
    for node, t in r["timeline_s"].items():
        print(f"{node:<10}" + "".join(f"{str(t.get(k, '-')):>12}" for k in r["timeline_steps"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
