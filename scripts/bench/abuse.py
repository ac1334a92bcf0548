"""Abuse benchmark on loopback: a node's service to its members, quiet versus under attack, in one run.

Starts a real commune with `meshmeet` processes: HQ (HTTP API, HTTPS on 127.0.0.1, mesh port)
and one hall linked to it. Measures, quiet and then under attack:

- status_ms: median of STATUS_SAMPLES `GET /api/status` at HQ (plain HTTP, one connection each);
- relink_s: median of RELINK_SAMPLES hall re-links: the hall is killed (SIGKILL) and started
  again; the time runs from the new hall's "node ... up" log line (written as it starts dialing
  HQ) to its "link up" line (HQ's msg2 verified), both from the hall's own log (ms timestamps);
- rss_mb: HQ's resident memory (VmRSS).

The attack runs in a child process (`abuse.py --attack`): HTTPS_IDLE connections to HQ's HTTPS
port (HTTPS_HALF_OPEN of them send half a TLS ClientHello, the rest nothing), MESH_IDLE silent
connections to HQ's mesh port, and HANDSHAKES_PER_S link handshakes per second from strangers
naming the hall's short id (HQ answers some with a signed msg2). Sources are spread over
127.x.y.1 addresses (20 per address on HTTPS, 16 on the mesh: under the per-address caps, so the
per-listener caps must hold); connections the node closes are reopened every second.

Goals (the issue's): attack latency and re-link within 2x of quiet, RSS growth under 50 MB.
ABUSE_HTTPS_IDLE, ABUSE_HTTPS_HALF_OPEN, ABUSE_MESH_IDLE and ABUSE_HANDSHAKES_PER_S override the
attack's size (to see which part costs what).
Takes about a minute. Never run it in a loop on the shared machine; it only ever connects to
127.0.0.1.

    python scripts/bench/abuse.py            # table
    python scripts/bench/abuse.py --json     # {"quiet": {...}, "attack": {...}, "rss_growth_mb": .., ...}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
STATUS_SAMPLES = 50
RELINK_SAMPLES = 5
POLL_S = 0.01
HTTPS_IDLE = int(os.environ.get("ABUSE_HTTPS_IDLE", 2000))
HTTPS_HALF_OPEN = int(os.environ.get("ABUSE_HTTPS_HALF_OPEN", 300))
MESH_IDLE = int(os.environ.get("ABUSE_MESH_IDLE", 1000))
HANDSHAKES_PER_S = int(os.environ.get("ABUSE_HANDSHAKES_PER_S", 50))
HTTPS_PER_ADDRESS = 20
MESH_PER_ADDRESS = 16
ATTACK_SETTLE_S = 5.0
REOPEN_EVERY_S = 1.0
HANG_GUARD_S = 60.0
GOAL_RATIO = 2.0
GOAL_RSS_GROWTH_MB = 50.0


# ----------------------------------------------------------------------------- processes


def meshmeet(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "meshmeet", *args], capture_output=True, text=True, env=env,
                          timeout=HANG_GUARD_S)
    if proc.returncode != 0:
        raise SystemExit(f"meshmeet {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def run_info(data_dir: Path, pid: int) -> dict | None:
    try:
        info = json.loads((data_dir / "run" / "node.json").read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("pid") == pid and info.get("http") else None


def wait(predicate, what: str, timeout: float = HANG_GUARD_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(POLL_S)
    raise SystemExit(f"timed out waiting for {what}")


class Node:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        args = ["run", "--data-dir", str(data_dir), "--listen", f"{LOOPBACK}:0", "--http", f"{LOOPBACK}:0",
                "--no-mdns", *extra]
        self.log_path = data_dir / "bench.log"
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "meshmeet", *args], stdout=self.log, stderr=self.log,
                                     env=env)
        try:
            self.info = wait(lambda: run_info(data_dir, self.proc.pid), f"{data_dir.name} to start")
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        self.ready_at = time.monotonic()

    def status(self) -> dict:
        with urllib.request.urlopen(self.info["http"] + "/api/status", timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------- measurements


def link(hq: Node, hall_id: str) -> dict | None:
    return {l["peer"]: l for l in hq.status()["links"]}.get(hall_id)


def relink_from_log(hall: Node) -> float:
    """Seconds from the hall's "node ... up" line to its first "link up" line (this process's lines)."""
    with open(hall.log_path, "rb") as f:
        f.seek(hall.log_start)
        lines = f.read().decode("utf-8", "replace").splitlines()

    def stamp(line: str) -> float:
        day, clock = line.split(" ", 2)[:2]
        hms, ms = clock.split(",")
        h, m, sec = (int(x) for x in hms.split(":"))
        return h * 3600 + m * 60 + sec + int(ms) / 1000

    started = next(stamp(ln) for ln in lines if ") up: mesh port" in ln)
    linked = next(stamp(ln) for ln in lines if ": link up: " in ln)
    return linked - started


def measure(hq: Node, hall_dir: Path, nodes: list[Node]) -> dict:
    """One phase's figures; restarts the hall RELINK_SAMPLES times (nodes[1] is always the live one)."""
    hall = nodes[1]
    cpu0, wall0 = cpu_s(hq.proc.pid), time.monotonic()
    samples = []
    for _ in range(STATUS_SAMPLES):
        t = time.perf_counter()
        hq.status()
        samples.append((time.perf_counter() - t) * 1000)
    relinks = []
    for _ in range(RELINK_SAMPLES):
        opened = link(hq, hall.info["node_id"])["links_opened"]
        hall.stop(signal.SIGKILL)
        wait(lambda: link(hq, hall.info["node_id"])["state"] != "up", "HQ to see the hall go")
        hall = nodes[1] = Node(hall_dir, "--peer", f"{LOOPBACK}:{hq.info['mesh_port']}")
        wait(lambda: (l := link(hq, hall.info["node_id"])) and l["state"] == "up" and l["links_opened"] > opened,
             "the hall to relink")
        relinks.append(relink_from_log(hall))
    return {
        "status_ms": round(statistics.median(samples), 2),
        "status_ms_p90": round(statistics.quantiles(samples, n=10)[-1], 2),
        "relink_s": round(statistics.median(relinks), 3),
        "rss_mb": round(rss_mb(hq.proc.pid), 1),
        "hq_cpu_pct": round(100 * (cpu_s(hq.proc.pid) - cpu0) / (time.monotonic() - wall0), 1),
    }


# ----------------------------------------------------------------------------- the attacker process


def client_hello_prefix() -> bytes:
    ctx = ssl.create_default_context()
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    return hello[: len(hello) // 2]


class Idle:
    """One attacker connection slot: reopened when the node closes it."""

    def __init__(self, source: str, port: int, payload: bytes) -> None:
        self.source, self.port, self.payload = source, port, payload
        self.sock: socket.socket | None = None
        self.opened = 0
        self.open()

    def open(self) -> None:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((self.source, 0))
            s.connect_ex((LOOPBACK, self.port))
        except OSError:
            s.close()
            self.sock = None
            return
        self.sock = s
        self.opened += 1
        self.sent = not self.payload

    def tend(self) -> None:
        s = self.sock
        if s is None:
            return self.open()
        if not self.sent:
            try:
                s.send(self.payload)
                self.sent = True
            except (BlockingIOError, OSError):
                pass
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            s.close()
            self.open()


def attack(https_port: int, mesh_port: int, commune_id: bytes, short_id: int) -> None:
    """Runs until SIGTERM; prints counters as JSON on exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    hello = client_hello_prefix()
    slots = []
    for i in range(HTTPS_IDLE):
        payload = hello if i < HTTPS_HALF_OPEN else b""
        slots.append(Idle(f"127.1.{i // HTTPS_PER_ADDRESS}.1", https_port, payload))
    for i in range(MESH_IDLE):
        slots.append(Idle(f"127.2.{i // MESH_PER_ADDRESS}.1", mesh_port, b""))
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    print("READY", flush=True)
    handshakes = signed = 0
    next_reopen = time.monotonic()
    interval = 1.0 / HANDSHAKES_PER_S
    next_hs = time.monotonic()
    while not stop:
        now = time.monotonic()
        if now >= next_reopen:
            for slot in slots:
                slot.tend()
            next_reopen = now + REOPEN_EVERY_S
        if now >= next_hs:
            handshakes += 1
            signed += stranger_handshake(f"127.3.0.{1 + handshakes % 5}", mesh_port, commune_id, short_id)
            next_hs += interval
        else:
            time.sleep(min(next_hs - now, 0.005))
    reopened = sum(s.opened for s in slots) - len(slots)
    print(json.dumps({"handshakes": handshakes, "signed_replies": signed, "reopened": reopened}), flush=True)


def stranger_handshake(source: str, port: int, commune_id: bytes, short_id: int) -> bool:
    """One msg1 naming a member; True when HQ signed a msg2 for it."""
    msg1 = b"\x01" + commune_id[:2] + short_id.to_bytes(2, "big") + os.urandom(32)
    try:
        with socket.socket() as s:
            s.bind((source, 0))
            s.settimeout(1.0)
            s.connect((LOOPBACK, port))
            s.sendall(msg1)
            got = b""
            while len(got) < 98:
                data = s.recv(4096)
                if not data:
                    break
                got += data
            return len(got) >= 98
    except OSError:
        return False


# ----------------------------------------------------------------------------- the run


def run_all() -> dict:
    started = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="meshmeet-abuse-"))
    nodes: list[Node] = []
    attacker: subprocess.Popen | None = None
    try:
        hq_dir, hall_dir = base / "hq", base / "hall"
        meshmeet("init", "--data-dir", str(hq_dir), "--commune", "Xã Thử", "--site", "UBND xã")
        code = meshmeet("invite", "--data-dir", str(hq_dir), "--site", "Thôn 1", "--address", "127.0.0.1:1").strip()
        (hq_dir / "webapp.toml").write_text(f'https = "{LOOPBACK}:0"\n')
        hq = Node(hq_dir)
        nodes.append(hq)
        meshmeet("join", "--data-dir", str(hall_dir), code, "--via", f"{LOOPBACK}:{hq.info['mesh_port']}", "--no-mdns")
        hall = Node(hall_dir, "--peer", f"{LOOPBACK}:{hq.info['mesh_port']}")
        nodes.append(hall)
        wait(lambda: (l := link(hq, hall.info["node_id"])) and l["state"] == "up", "the hall's first link")
        https_url = wait(lambda: hq.status()["webapp"]["https"], "HQ's HTTPS listener")
        status = hq.status()
        commune_id = bytes.fromhex(status["node"]["commune_id"])
        roster = json.loads(meshmeet("roster", "--data-dir", str(hall_dir), "--json"))
        short_id = next(m["short_id"] for m in roster["members"] if m["role"] == "hall")
        time.sleep(1.0)

        quiet = measure(hq, hall_dir, nodes)
        attacker = subprocess.Popen(
            [sys.executable, __file__, "--attack", https_url.rsplit(":", 1)[1], str(hq.info["mesh_port"]),
             commune_id.hex(), str(short_id)],
            stdout=subprocess.PIPE, text=True,
        )
        assert attacker.stdout is not None
        if attacker.stdout.readline().strip() != "READY":
            raise SystemExit("the attacker process did not start")
        time.sleep(ATTACK_SETTLE_S)
        under = measure(hq, hall_dir, nodes)
        admission = hq.status().get("admission", {})
        attacker.send_signal(signal.SIGTERM)
        out, _ = attacker.communicate(timeout=HANG_GUARD_S)
        counters = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
            attacker.wait()
        for node in nodes:
            node.stop()
        if os.environ.get("ABUSE_KEEP"):
            print("kept", base, file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    result: dict = {"quiet": quiet, "attack": under}
    result["rss_growth_mb"] = round(under["rss_mb"] - quiet["rss_mb"], 1)
    result["ratios"] = {
        "status_ms": round(under["status_ms"] / quiet["status_ms"], 2),
        "relink_s": round(under["relink_s"] / quiet["relink_s"], 2),
    }
    result["goals"] = {
        "status within 2x of quiet": result["ratios"]["status_ms"] <= GOAL_RATIO,
        "relink within 2x of quiet": result["ratios"]["relink_s"] <= GOAL_RATIO,
        "RSS growth under 50 MB": result["rss_growth_mb"] < GOAL_RSS_GROWTH_MB,
    }
    result["attack_load"] = {
        "https_idle": HTTPS_IDLE, "https_half_open": HTTPS_HALF_OPEN, "mesh_idle": MESH_IDLE,
        "handshakes_per_s": HANDSHAKES_PER_S, **counters,
    }
    result["node_admission"] = admission
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    return result


def print_table(result: dict) -> None:
    q, a, r = result["quiet"], result["attack"], result["ratios"]
    print(f"{'median of each':36} {'quiet':>10} {'attack':>10} {'ratio':>8}")
    print(f"{'/api/status at HQ, ms':36} {q['status_ms']:>10} {a['status_ms']:>10} {r['status_ms']:>8}")
    print(f"{'  its 90th percentile, ms':36} {q['status_ms_p90']:>10} {a['status_ms_p90']:>10}")
    print(f"{'hall re-link, s':36} {q['relink_s']:>10} {a['relink_s']:>10} {r['relink_s']:>8}")
    print(f"{'HQ resident memory, MB':36} {q['rss_mb']:>10} {a['rss_mb']:>10} {'+' + str(result['rss_growth_mb']):>8}")
    print(f"{'HQ CPU while measuring, %':36} {q['hq_cpu_pct']:>10} {a['hq_cpu_pct']:>10}")
    load = result["attack_load"]
    print(f"\nattack: {load['https_idle']} HTTPS ({load['https_half_open']} half-open TLS), {load['mesh_idle']} mesh "
          f"idle connections, {load['handshakes_per_s']} stranger handshakes/s; sent {load.get('handshakes')}, "
          f"signed replies {load.get('signed_replies')}, connections reopened {load.get('reopened')}")
    print(f"HQ admission counters: {result['node_admission']}")
    print("\ngoals:")
    for name, ok in result["goals"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    print(f"\n{result['elapsed_s']:.1f} s on {os.cpu_count()} cores, load {result['load_avg_1m']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON result only")
    parser.add_argument("--attack", nargs=4, metavar=("HTTPS_PORT", "MESH_PORT", "COMMUNE_ID", "SHORT_ID"),
                        help=argparse.SUPPRESS)  # the attacker process
    args = parser.parse_args()
    if args.attack:
        https_port, mesh_port, commune_hex, short_id = args.attack
        attack(int(https_port), int(mesh_port), bytes.fromhex(commune_hex), int(short_id))
        return
    result = run_all()
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
