"""Benchmark: live audio HQ -> hall over a lossy link, media datagrams against the TCP link (same run).

Two real `meshmeet run` processes on loopback; a Python presenter sends 20 ms audio chunks (and,
with --video, 10 fps 900 B video chunks) to HQ's /media/ws/present, a Python subscriber reads the
hall's /media/ws/hall. Loss: iptables `statistic` rules drop that share of the packets to and from
HQ's mesh port (TCP) and HQ's media datagram port (UDP), both directions (netem is not in this
kernel, so no added delay: on loopback TCP repairs a loss by fast retransmit or its 200 ms minimum
RTO, which is the head-of-line blocking the datagrams avoid). Baseline: the same nodes with
MESHMEET_NO_DATAGRAMS=1 (media on the TCP link, as before issue 13). Per chunk: latency from the
presenter's send to the subscriber's receive (one clock), p50/p95/p99, share heard within a 300 ms
playout, share heard at all. Needs root (iptables).
Usage: python scripts/bench/datagram.py [--json] [--seconds 15] [--loss 0,0.03,0.05] [--video]
"""

from __future__ import annotations

import argparse
import asyncio
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

from meshmeet.media import chunk as C  # noqa: E402

PLAYOUT_S = 0.3
OPUS = C.encode_config(C.DecoderConfig(C.TRACK_AUDIO, 0, 1, {"codec": "opus", "numberOfChannels": 1, "sampleRate": 48000}))
VP8 = C.encode_config(C.DecoderConfig(C.TRACK_VIDEO, C.LAYER_HIGH, 1, {"codec": "vp8", "codedWidth": 640, "codedHeight": 360}))


def _rules(hq_tcp: int, hq_udp: int | None, p: float) -> list[list[str]]:
    out = []
    for proto, port in (("tcp", hq_tcp), ("udp", hq_udp)):
        if port is None:
            continue
        for side in ("--sport", "--dport"):
            out.append(["INPUT", "-p", proto, "-i", "lo", side, str(port), "-m", "statistic", "--mode", "random",
                        "--probability", str(p), "-j", "DROP"])
    return out


async def _talk(hq_url: str, hall_url: str, seconds: float, video: bool) -> tuple[dict[int, float], dict[int, float], float]:
    import aiohttp

    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    video_got: set[int] = set()
    n = int(seconds / 0.02)
    ws = lambda u, p: u.replace("http://", "ws://").rstrip("/") + p  # noqa: E731
    async with aiohttp.ClientSession() as s, s.ws_connect(ws(hall_url, "/media/ws/hall")) as hall, \
            s.ws_connect(ws(hq_url, "/media/ws/present")) as pres:

        async def listen() -> None:
            from meshmeet.media.fragments import Reassembly

            joiner = Reassembly()  # the hall link cuts big video chunks, as the player's worker joins them
            async for m in hall:
                if m.type != aiohttp.WSMsgType.BINARY:
                    continue
                data = joiner.join("hall", m.data) if m.data[0] == C.KIND_FRAGMENT else m.data
                if data is not None and data[0] == C.KIND_CHUNK:
                    info = C.peek_chunk(data)
                    if info.track == C.TRACK_AUDIO and info.seq not in got:
                        got[info.seq] = time.monotonic()
                    elif info.track == C.TRACK_VIDEO:
                        video_got.add(info.seq)

        task = asyncio.create_task(listen())
        await pres.send_bytes(OPUS)
        await pres.send_bytes(VP8)
        await asyncio.sleep(0.5)
        start = time.monotonic()
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
            sent[i] = time.monotonic()
            await pres.send_bytes(C.encode(C.Chunk(C.TRACK_AUDIO, 0, 0, True, 1, i, i * 20_000, 20_000, bytes(40))))
            if video and i % 5 == 0:
                k = i // 5
                await pres.send_bytes(C.encode(C.Chunk(C.TRACK_VIDEO, 0, 0, k % 20 == 0, 1, k, i * 20_000, 100_000,
                                                       bytes(4000 if k % 20 == 0 else 900))))
        await asyncio.sleep(3.0)
        task.cancel()
    return sent, got, len(video_got) / max(1, (n + 4) // 5)


def _pct(v: list[float], p: float) -> float | None:
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]


def run_point(base: Path, mode: str, loss: float, seconds: float, video: bool) -> dict:
    from browser.node_chain import media
    from nodeproc import NodeProcess, make_commune, meshmeet, stop_all, wait_for

    old = os.environ.get("MESHMEET_NO_DATAGRAMS")
    os.environ["MESHMEET_NO_DATAGRAMS"] = "1" if mode == "tcp" else "0"
    nodes: list = []
    rules: list[list[str]] = []
    try:
        hq_dir, invites = make_commune(base, 1)
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        hall_dir, code = invites[0]
        meshmeet("join", "--data-dir", str(hall_dir), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        hall = NodeProcess(hall_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(hall)
        wait_for(lambda: media(hall)["source_link"] == hq.node_id, "the hall hears HQ")
        wait_for(lambda: media(hq)["links"] and media(hq)["links"][0]["transport"] == mode, f"{mode} transport")
        udp = media(hq)["datagrams"]["udp_port"] if mode == "datagram" else None
        rules = _rules(hq.mesh_port, udp, loss) if loss > 0 else []
        for r in rules:
            subprocess.run(["iptables", "-I", *r], check=True)
        sent, got, video_share = asyncio.run(_talk(hq.url, hall.url, seconds, video))
        link = media(hq)["links"][0]
    finally:
        for r in rules:
            subprocess.run(["iptables", "-D", *r], check=False)
        stop_all(nodes)
        if old is None:
            os.environ.pop("MESHMEET_NO_DATAGRAMS", None)
        else:
            os.environ["MESHMEET_NO_DATAGRAMS"] = old
    lat = [(got[s] - t) * 1000 for s, t in sent.items() if s in got]
    return {"mode": mode, "loss": loss, "chunks": len(sent), "p50_ms": _pct(lat, 0.5), "p95_ms": _pct(lat, 0.95),
            "p99_ms": _pct(lat, 0.99), "heard": len(lat) / len(sent),
            "heard_in_300ms": sum(1 for x in lat if x <= PLAYOUT_S * 1000) / len(sent),
            "video_heard": video_share if video else None,
            "transport_at_end": link["transport"], "reported_loss": link.get("loss")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--loss", default="0,0.03,0.05")
    ap.add_argument("--video", action="store_true", help="also send 10 fps video (4 KB keyframes every 2 s)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (iptables)")
    rows = []
    for loss in [float(x) for x in args.loss.split(",")]:
        for mode in ("tcp", "datagram"):
            with tempfile.TemporaryDirectory() as d:
                rows.append(run_point(Path(d), mode, loss, args.seconds, args.video))
    base = {r["loss"]: r for r in rows if r["mode"] == "tcp"}
    for r in rows:
        b = base[r["loss"]]
        r["p95_vs_tcp"] = (r["p95_ms"] / b["p95_ms"]) if r["p95_ms"] and b["p95_ms"] else None
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    f = lambda x, n=1: "-" if x is None else f"{x:.{n}f}"  # noqa: E731
    print(f"{'loss':>5} {'mode':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'heard':>7} {'in 300ms':>8} "
          f"{'p95/tcp':>8} {'reported loss':>13} {'video':>7}")
    for r in rows:
        print(f"{r['loss']:>5} {r['mode']:>9} {f(r['p50_ms']):>8} {f(r['p95_ms']):>8} {f(r['p99_ms']):>8} "
              f"{r['heard'] * 100:>6.2f}% {r['heard_in_300ms'] * 100:>7.2f}% {f(r['p95_vs_tcp'], 2):>8} "
              f"{f(r['reported_loss'], 3):>13} {f(None if r['video_heard'] is None else r['video_heard'] * 100):>6}%")


if __name__ == "__main__":
    main()
