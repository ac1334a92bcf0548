"""Part (a) of scripts/bench/conference.py: what relaying an upstream conference costs.

Two real `meshmeet run` processes (HQ, one hall) on loopback. HQ runs `meshmeet ingest --listen`;
tests/ingest_tools.py pushes a test pattern + 440 Hz tone (H.264/AAC, 25 fps, paced in real time)
over RTMP, first at 640x360, then at 1280x720. A Python subscriber on the hall's /media/ws/hall
decodes every chunk with PyAV. Latency: from when the generator handed the source packet holding a
chunk's last sample or frame to FFmpeg's muxer (it logs each packet's source time and wall time;
the ingest's status maps chunk timestamps back to source time) to when the hall decoded it. CPU: the ingest worker's own CPU seconds (its stats) over wall seconds, steady part only.
Baseline, same run, same process model (a child process, RTMP listen, stdout pipe):
scripts/bench/_ingest_baseline.py decodes the same stream and encodes one VP8 layer + Opus;
its latency is source time → encoded packet read by the parent.
Goals (issue 15): p95 added latency ≤ 1 s, ingest ≤ 1 core at 720p.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tests" / "ingest_tools.py"
BASELINE = Path(__file__).with_name("_ingest_baseline.py")
GOAL_ADDED_P95_S = 1.0
GOAL_CORES_720P = 1.0
WARMUP_S = 3.0  # the first seconds carry FFmpeg's probing backlog: left out
WINDOW_S = 3.0  # latency p95 per this much source time: shows whether the tail is a start-up burst
SIZES = (("360p", "640x360"), ("720p", "1280x720"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3)


class SentTimes:
    """When each source packet was handed to the muxer, per track ("v", "a"): (source s, wall)."""

    def __init__(self) -> None:
        self.v: list[tuple[float, float]] = []
        self.a: list[tuple[float, float]] = []

    def read(self, stream) -> None:
        for line in stream:
            parts = line.split()
            if len(parts) == 3 and parts[0] in ("v", "a"):
                getattr(self, parts[0]).append((float(parts[1]), float(parts[2])))

    def sent_at(self, track: str, src_end: float) -> float | None:
        """Wall time the last source packet needed for media up to `src_end` was muxed."""
        xs = getattr(self, track)
        i = bisect.bisect_right(xs, (src_end - 1e-4, float("inf"))) - 1
        return xs[i][1] if i >= 0 else None


def _spawn(port: int, size: str, seconds: float, path: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TOOLS), f"rtmp://127.0.0.1:{port}{path}", "flv", str(seconds), size],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "INGEST_TOOLS_LOG": "1"})


def _push(port: int, size: str, seconds: float, path: str = "/live/stream") -> tuple[subprocess.Popen, SentTimes]:
    """Push until the listener takes it; a thread keeps reading the generator's packet times."""
    gen = _spawn(port, size, seconds, path)
    deadline = time.time() + 30
    while True:  # the listener may not be up yet: the push is refused at once, try again
        line = gen.stdout.readline()
        if line.startswith("{"):
            sent = SentTimes()
            threading.Thread(target=sent.read, args=(gen.stdout,), daemon=True).start()
            return gen, sent
        gen.wait()
        if time.time() > deadline:
            raise RuntimeError("the RTMP listener never accepted the push")
        time.sleep(0.3)
        gen = _spawn(port, size, seconds, path)


def _ingest_run(hq, hall, port: int, size: str, seconds: float, path: str) -> dict:
    from ingest_tools import HallSubscriber
    from nodeproc import wait_for

    wait_for(lambda: hq.status()["ingest"]["state"] in ("starting", "retrying")
             and hq.status()["ingest"]["next_try_in_s"] in (None, 0.0), "the ingest listening")
    time.sleep(1.0)
    sub = HallSubscriber()
    cpu: list[tuple[float, float]] = []
    done = threading.Event()
    holder: dict = {}

    def sample() -> None:
        while not done.is_set():
            try:
                st = hq.status()["ingest"]
            except OSError:  # a node slow to answer on a loaded host: try again
                continue
            if st.get("worker", {}).get("cpu_s") is not None and st.get("state") == "live":
                cpu.append((time.time(), float(st["worker"]["cpu_s"])))
            time.sleep(1.0)

    def stream() -> None:
        gen, sent = _push(port, size, seconds, path)
        holder["sent"] = sent
        holder["t0"] = time.time()
        gen.wait()
        time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    pusher = threading.Thread(target=stream, daemon=True)
    pusher.start()
    ws = hall.url.replace("http://", "ws://").rstrip("/") + "/media/ws/hall"
    asyncio.run(sub.listen(ws, lambda s: not pusher.is_alive(), guard_s=seconds + 40))
    done.set()
    st = hq.status()["ingest"]
    first_s, ts_base = st["first_source_s"], st["ts_base_us"]
    t0, sent = holder["t0"], holder["sent"]
    lat = {0: [], 1: []}
    windows: dict[int, list[float]] = {}
    for track, ts, wall in sub.decoded_at:
        if ts < ts_base:
            continue  # an earlier run's
        src = first_s + (ts - ts_base) / 1e6
        if src < WARMUP_S:
            continue
        at = sent.sent_at("a", src + 0.02) if track == 0 else sent.sent_at("v", src)
        if at is not None:
            lat[track].append(wall - at)
            windows.setdefault(int(src // WINDOW_S), []).append(wall - at)
    steady = [c for c in cpu if c[0] - t0 >= WARMUP_S]
    cores = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0]) if len(steady) >= 3 else None
    return {"audio_p50_s": _pct(lat[0], 0.5), "audio_p95_s": _pct(lat[0], 0.95),
            "video_p50_s": _pct(lat[1], 0.5), "video_p95_s": _pct(lat[1], 0.95),
            "audio_decoded": len(lat[0]), "video_decoded": len(lat[1]), "decode_errors": sub.errors,
            "cores": None if cores is None else round(cores, 3),
            "p95_by_window_s": {f"{k * WINDOW_S:g}-{(k + 1) * WINDOW_S:g}": _pct(v, 0.95) for k, v in sorted(windows.items())}}


def _baseline_run(size: str, seconds: float) -> dict:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(BASELINE), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    w0 = time.time()
    gen, sent = _push(port, size, seconds)
    out, _ = proc.communicate(timeout=seconds + 60)
    wall = time.time() - w0
    gen.wait()
    lat = {"a": [], "v": []}
    cpu = None
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "cpu":
            cpu = float(parts[1])
        elif float(parts[1]) >= WARMUP_S:
            src = float(parts[1])
            at = sent.sent_at("a", src + 0.02) if parts[0] == "a" else sent.sent_at("v", src)
            if at is not None:
                lat[parts[0]].append(float(parts[2]) - at)
    return {"audio_p50_s": _pct(lat["a"], 0.5), "audio_p95_s": _pct(lat["a"], 0.95),
            "video_p50_s": _pct(lat["v"], 0.5), "video_p95_s": _pct(lat["v"], 0.95),
            "cores": None if cpu is None else round(cpu / wall, 3)}


def ingest(args) -> dict:
    from nodeproc import NodeProcess, make_commune, meshmeet, stop_all, wait_for

    seconds = float(getattr(args, "ingest_seconds", 20))
    out: dict = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
                 "seconds_per_run": seconds, "source": "H.264 + AAC, 25 fps, RTMP push",
                 "mesh": "VP8 640x360 + 320x180 L1T3, Opus 24 kbit/s", "runs": {}, "baseline": {}}
    with tempfile.TemporaryDirectory() as tmp:
        hq_dir, invites = make_commune(Path(tmp), 1)
        nodes = []
        try:
            hq = NodeProcess(hq_dir, mdns=False)
            nodes.append(hq)
            meshmeet("join", "--data-dir", str(invites[0][0]), invites[0][1], "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
            hall = NodeProcess(invites[0][0], "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
            nodes.append(hall)
            wait_for(lambda: hall.status()["media"]["source_link"] == hq.node_id, "source beacons from HQ")
            port = _free_port()
            started = meshmeet("ingest", "--listen", str(port), "--bind", "127.0.0.1", "--data-dir", str(hq_dir), "--json")
            path = json.loads(started.stdout)["push"]["path"]  # /live/KEY: the gate refuses any other
            for name, size in SIZES:
                out["runs"][name] = _ingest_run(hq, hall, port, size, seconds, path)
            meshmeet("ingest", "stop", "--data-dir", str(hq_dir))
        finally:
            stop_all(nodes)
    for name, size in SIZES:
        out["baseline"][name] = _baseline_run(size, seconds)
    for name, _ in SIZES:
        r, b = out["runs"][name], out["baseline"][name]
        r["added_audio_p95_s"] = (None if r["audio_p95_s"] is None or b["audio_p95_s"] is None
                                  else round(r["audio_p95_s"] - b["audio_p95_s"], 3))
        r["added_video_p95_s"] = (None if r["video_p95_s"] is None or b["video_p95_s"] is None
                                  else round(r["video_p95_s"] - b["video_p95_s"], 3))
        r["cores_vs_baseline"] = (None if not r["cores"] or not b["cores"] else round(r["cores"] / b["cores"], 2))
    r720 = out["runs"]["720p"]
    worst = max((r[k] for r in out["runs"].values() for k in ("audio_p95_s", "video_p95_s") if r[k] is not None),
                default=None)
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["goals"] = {"added_latency_p95_s": GOAL_ADDED_P95_S, "cores_720p": GOAL_CORES_720P}
    out["goals_met"] = {"latency": worst is not None and worst <= GOAL_ADDED_P95_S,
                        "cpu_720p": r720["cores"] is not None and r720["cores"] <= GOAL_CORES_720P}
    return out


def ingest_table(r: dict) -> str:
    lines = ["(a) ingest: source time -> decoded at a hall (s), CPU cores of the ingest worker",
             f"{'run':<14}{'audio p50':>10}{'p95':>8}{'video p50':>10}{'p95':>8}{'cores':>8}"]
    for name in r["runs"]:
        for label, x in ((f"ingest {name}", r["runs"][name]), (f"baseline {name}", r["baseline"][name])):
            lines.append(f"{label:<14}{x['audio_p50_s']!s:>10}{x['audio_p95_s']!s:>8}{x['video_p50_s']!s:>10}"
                         f"{x['video_p95_s']!s:>8}{x['cores']!s:>8}")
    lines.append(f"load average {r['load_average_at_start']} -> {r['load_average_at_end']} on {r['cpus']} CPUs")
    lines.append(f"goals: p95 <= {GOAL_ADDED_P95_S} s, <= {GOAL_CORES_720P} core at 720p; met: {r['goals_met']}")
    return "\n".join(lines)
