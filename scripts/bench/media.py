#!/usr/bin/env python3
"""Media relay benchmark: latency added per relay hop, and WebSocket subscribers per core.

Server (one process, one asyncio loop, as the gateway runs): either the real MediaHub (relay core
in the middle) or a bare forwarder (every presenter message to every subscriber, nothing else)
as the baseline, measured in the same run with the same clients. Clients run in this process: a
presenter sending audio (50/s, 74 B) and low + high video (20/s) whose payload carries a send
timestamp, and N hall subscribers (audio + low video). Loopback only; bounded in time.

Capture -> decoded latency in headless Chromium (skipped with --no-browser or without Chromium):
three real nodes in a chain (HQ -> relay hall -> end hall, tests/browser/node_chain.py), the
presenter page at HQ and one probing player page at the end hall (two mesh links), in the same
browser context so that their clocks agree. Before the chain, as the same-run baseline, a single
node alone with the presenter and a player at it (browser-seconds / 2): the same capture,
encoder, gateway and player, no mesh link. Only one player page runs at a time on purpose: in a
commune the presenter, each hall's TV and each node are separate machines, but here they share
2 cores, and a second player page (one more VP8 decoder) saturated them: with a player at HQ as
well, the end hall's audio p95 went from 26-57 ms to 300-700 ms, a tail made by the host, not by
the mesh (each node process uses ~0.1 core throughout). Latency of a frame =
performance.timeOrigin + now() when the player's decoder output it, minus when the presenter
page handed that frame to its encoder (video: the page's epoch + the chunk timestamp; audio: the
instant its PCM arrived from the capture worklet, as audio timestamps count frames). The bare
in-browser loop (the presenter page decoding its own audio) is a second same-run baseline.

    python scripts/bench/media.py [--json] [--subs 50] [--seconds 4] [--max-subs 300]
                                  [--browser-seconds 20] [--no-browser]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from meshmeet.media import chunk as C  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def serve(kind: str, port_q: mp.Queue) -> None:
    from meshmeet.web.media_routes import MediaHub, add_media_routes

    async def main() -> None:
        app = web.Application()
        if kind == "relay":
            add_media_routes(app, MediaHub())
        else:
            subs: set[web.WebSocketResponse] = set()

            async def present(req: web.Request) -> web.WebSocketResponse:
                ws = web.WebSocketResponse(max_msg_size=2 << 20)
                await ws.prepare(req)
                async for msg in ws:
                    for s in tuple(subs):
                        if not s.closed:
                            await s.send_bytes(msg.data)
                return ws

            async def hall(req: web.Request) -> web.WebSocketResponse:
                ws = web.WebSocketResponse()
                await ws.prepare(req)
                subs.add(ws)
                async for _ in ws:
                    pass
                subs.discard(ws)
                return ws

            app.router.add_get("/media/ws/present", present)
            app.router.add_get("/media/ws/hall", hall)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_q.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.sleep(3600)

    asyncio.run(main())


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def msg(track: int, layer: int, seq: int, key: bool, size: int, tid: int = 0) -> bytes:
    stamp = time.perf_counter_ns().to_bytes(8, "big")
    return C.encode(C.Chunk(track, layer, tid, key, 0, seq, seq * 20000, 20000, stamp + bytes(max(0, size - 22))))


async def run_point(port: int, pid: int, n_subs: int, seconds: float, layer: str) -> dict:
    lat_ms: list[float] = []
    counts = [0] * n_subs
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        pres = await http.ws_connect(f"http://127.0.0.1:{port}/media/ws/present")
        cfgs = [C.encode(C.DecoderConfig(0, 0, 0, {"codec": "opus"})),
                C.encode(C.DecoderConfig(1, 0, 0, {"codec": "vp8"})), C.encode(C.DecoderConfig(1, 1, 0, {"codec": "vp8"}))]
        for c in cfgs:
            await pres.send_bytes(c)
        subs = [await http.ws_connect(f"http://127.0.0.1:{port}/media/ws/hall?layer={layer}") for _ in range(n_subs)]

        async def reader(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            parts = bytearray()
            async for m in ws:
                if m.type != aiohttp.WSMsgType.BINARY:
                    continue
                data = m.data
                if data[0] == C.KIND_FRAGMENT:  # pieces of a large video chunk
                    if data[1] & C.FRAGMENT_FIRST:
                        parts = bytearray()
                    parts += data[2:]
                    if not data[1] & C.FRAGMENT_LAST:
                        continue
                    data = bytes(parts)
                if data[0] != C.KIND_CHUNK:
                    continue
                counts[i] += 1
                if i % 10 == 0 and len(data) >= 22:
                    lat_ms.append((time.perf_counter_ns() - int.from_bytes(data[14:22], "big")) / 1e6)

        tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(subs)]
        await asyncio.sleep(0.3)
        t_end = time.perf_counter() + seconds
        c0, w0 = cpu_s(pid), time.perf_counter()
        sent_av = n = 0
        t_next = time.perf_counter()
        warm = 25
        while time.perf_counter() < t_end:
            await pres.send_bytes(msg(0, 0, n, True, 74))
            sent_av += 1
            if n % 2 == 0:  # video at 25/s here (every other 20 ms tick)
                key = (n // 2) % 50 == 0 or n == 0
                tid = 0 if key else (0, 2, 1, 2)[(n // 2) % 4]
                await pres.send_bytes(msg(1, 1, n // 2, key, 1500 if key else 500, tid))
                await pres.send_bytes(msg(1, 0, n // 2, key, 4000 if key else 1000, tid))
                sent_av += 1
            n += 1
            if n == warm:
                lat_ms.clear()
            t_next += 0.02
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
        await asyncio.sleep(0.3)
        cpu = (cpu_s(pid) - c0) / (time.perf_counter() - w0)
        for t in tasks:
            t.cancel()
        for ws in subs:
            await ws.close()
        await pres.close()
    lat_ms.sort()
    q = lambda p: lat_ms[min(len(lat_ms) - 1, int(p * len(lat_ms)))] if lat_ms else float("nan")  # noqa: E731
    delivered = statistics.mean(counts) / max(1, sent_av)
    return {"subscribers": n_subs, "p50_ms": round(q(0.5), 3), "p99_ms": round(q(0.99), 3),
            "cpu_cores": round(cpu, 3), "delivered": round(min(delivered, 1.0), 3)}


def core_fanout(n_links: int, chunks: int = 3000) -> dict:
    """Time to fan one chunk out to n_links in-process: relay core vs plain per-link queues."""
    from collections import deque

    from meshmeet.media.relay import MediaRelay

    r = MediaRelay(source="src")
    for i in range(n_links):
        r.add_link(f"l{i}", 0.0, best_level=2)
    bare = [deque() for _ in range(n_links)]
    t_relay: list[float] = []
    t_bare: list[float] = []
    for n in range(chunks):
        now = n * 0.01
        video = n % 2 == 1
        key = n % 100 == 1
        data = (C.encode(C.Chunk(1, 1, 0 if key else (0, 2, 1, 2)[(n // 2) % 4], key, 0, n, 0, 50000, bytes(500)))
                if video else C.encode(C.Chunk(0, 0, 0, True, 0, n, 0, 20000, bytes(60))))
        t0 = time.perf_counter_ns()
        r.receive("src", data, now)
        for i in range(n_links):
            while r.pop(f"l{i}", now) is not None:
                pass
        t1 = time.perf_counter_ns()
        for q in bare:
            q.append(data)
        for q in bare:
            while q:
                q.popleft()
        t2 = time.perf_counter_ns()
        if n % 5 == 0:
            r.tick(now)
        t_relay.append((t1 - t0) / 1e6)
        t_bare.append((t2 - t1) / 1e6)
    def q(v: list[float], p: float) -> float:
        v = sorted(v)
        return round(v[min(len(v) - 1, int(p * len(v)))], 4)
    return {"links": n_links, "relay_p50_ms": q(t_relay, 0.5), "relay_p99_ms": q(t_relay, 0.99),
            "bare_p50_ms": q(t_bare, 0.5), "bare_p99_ms": q(t_bare, 0.99)}


def with_server(kind: str, fn) -> dict:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=serve, args=(kind, q), daemon=True)
    p.start()
    try:
        port = q.get(timeout=30)
        return asyncio.run(fn(port, p.pid))
    finally:
        p.terminate()
        p.join(5)


def _pct(v: list[float], p: float) -> float | None:
    if not v:
        return None
    v = sorted(v)
    return round(v[min(len(v) - 1, int(p * len(v)))], 1)


def audio_capture(captured: dict[int, float], keys: list[int], decoded_ts_us: float) -> float | None:
    """When the chunk a decoded audio frame came from was captured (`keys`: sorted(captured)):
    decoders give the chunk's timestamp less Opus's pre-skip (6.5 ms), so take the first chunk
    within half a frame after it."""
    import bisect

    i = bisect.bisect_left(keys, int(decoded_ts_us))
    if i < len(keys) and keys[i] - decoded_ts_us < 10_000:
        return captured[keys[i]]
    return None


def browser_latency(seconds: float) -> dict:
    """Capture -> decoded latency per player page and track (see the module docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from browser.media_fixtures import CHROMIUM, browser_missing_reason, chromium_args, write_wav, write_y4m

    reason = browser_missing_reason()
    if reason:
        return {"skipped": reason}
    from browser.node_chain import node_chain
    from nodeproc import NodeProcess, make_commune, stop_all
    from playwright.sync_api import sync_playwright

    def local(url: str) -> str:
        return url.replace("127.0.0.1", "localhost")  # a secure context for WebCodecs

    def wait(page, expr: str, pred, guard_s: float = 60.0):  # a hang guard
        end = time.monotonic() + guard_s
        while True:
            v = page.evaluate(expr)
            if pred(v) or time.monotonic() > end:
                return v
            time.sleep(0.1)

    def busy_cores_s() -> float:
        return sum(float(x) for x in open("/proc/stat").readline().split()[1:4]) / CLK_TCK

    def measure(browser, pres_url: str, player_urls: dict[str, str], secs: float, pids: dict[str, int]):
        ctx = browser.new_context()
        try:
            pres = ctx.new_page()
            pres.goto(pres_url)
            pres.click("#start")
            wait(pres, "window.meshmeetPresenter.stats().running", bool)
            pages = {k: ctx.new_page() for k in player_urls}
            for k, pg in pages.items():
                pg.goto(player_urls[k])
            for pg in pages.values():
                wait(pg, "window.meshmeet.stats()", lambda s: s["videoFramesDecoded"] > 20)
                pg.evaluate("window.meshmeet.probe()")  # discard the start
            pres.evaluate("window.meshmeetPresenter.takeLoop()")
            epoch_ms = pres.evaluate("window.meshmeetPresenter.stats().epochMs")
            lat: dict[str, dict[int, list[float]]] = {k: {0: [], 1: []} for k in pages}
            loop: list[float] = []
            captured: dict[int, float] = {}  # audio timestamp -> when its PCM reached the encoder
            cpu0, busy0, t0 = {k: cpu_s(v) for k, v in pids.items()}, busy_cores_s(), time.monotonic()
            t_end = time.monotonic() + secs
            while time.monotonic() < t_end:
                time.sleep(1.0)
                loop += pres.evaluate("window.meshmeetPresenter.takeLoop()")
                captured.update((int(ts), at) for ts, at in pres.evaluate("window.meshmeetPresenter.takeCaptures()"))
                keys = sorted(captured)
                for k, pg in pages.items():
                    for track, ts_us, at_ms in pg.evaluate("window.meshmeet.probe()")["decoded"]:
                        cap = epoch_ms + ts_us / 1000 if track == 1 else audio_capture(captured, keys, ts_us)
                        if cap is not None:
                            lat[k][track].append(at_ms - cap)
            dt = time.monotonic() - t0
            stats = {k: pg.evaluate("window.meshmeet.details()") for k, pg in pages.items()}
            stats["cpu_cores"] = {k: round((cpu_s(v) - cpu0[k]) / dt, 2) for k, v in pids.items()}
            stats["cpu_cores"]["machine"] = round((busy_cores_s() - busy0) / dt, 2)
            pres.click("#stop")
            return loop, lat, stats
        finally:
            ctx.close()

    with tempfile.TemporaryDirectory(prefix="mm-bench-media-") as tmp:
        d = Path(tmp)
        write_y4m(d / "cam.y4m", 200)
        write_wav(d / "mic.wav", 10.0)
        (d / "one").mkdir()
        (d / "nodes").mkdir()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=chromium_args(d / "cam.y4m", d / "mic.wav"))
            try:
                one_dir, _ = make_commune(d / "one", 0)  # one node alone: what one site's own hop costs
                one = NodeProcess(one_dir, mdns=False)
                try:
                    _, lat1, stats1 = measure(browser, local(one.url) + "/present?probe=1",
                                              {"one_node": local(one.url) + "/media/hall?probe=1"}, seconds / 2,
                                              {"node": one.proc.pid})
                finally:
                    stop_all([one])
                with node_chain(d / "nodes") as (hq, _relay, end):
                    loop, lat, stats = measure(browser, local(hq.url) + "/present?probe=1",
                                               {"end_2_links": local(end.url) + "/media/hall?probe=1"}, seconds,
                                               {"hq": hq.proc.pid, "relay": _relay.proc.pid, "end": end.proc.pid})
            finally:
                browser.close()
    lat.update(lat1)
    cpu = {"one_node": stats1.pop("cpu_cores"), "chain": stats.pop("cpu_cores")}
    stats.update(stats1)
    out: dict = {"seconds": seconds, "one_node_seconds": seconds / 2, "goal_audio_p95_ms": 150.0, "load_average_1min": round(os.getloadavg()[0], 1),
                 "loop_audio": {"frames": len(loop), "p50_ms": _pct(loop, 0.5), "p95_ms": _pct(loop, 0.95),
                                "p99_ms": _pct(loop, 0.99)}}
    for k in lat:
        for track, name in ((0, "audio"), (1, "video")):
            v = lat[k][track]
            out[f"{k}_{name}"] = {"frames": len(v), "p50_ms": _pct(v, 0.5), "p95_ms": _pct(v, 0.95), "p99_ms": _pct(v, 0.99)}
        out[f"{k}_player"] = {x: stats[k].get(x) for x in ("audioUnderruns", "bufferedMs", "targetMs", "videoLayer", "decoderErrors")}
    a, b = out["end_2_links_audio"]["p95_ms"], out["one_node_audio"]["p95_ms"]
    out["added_by_2_links_audio_p95_ms"] = round(a - b, 1) if a is not None and b is not None else None
    out["cpu_cores"] = cpu  # node processes and the whole machine (all engineers) while measuring
    c = out["loop_audio"]["p95_ms"]
    out["added_by_nodes_audio_p95_ms"] = round(a - c, 1) if a is not None and c is not None else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--subs", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--max-subs", type=int, default=300)
    ap.add_argument("--browser-seconds", type=float, default=20.0)
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()

    core = core_fanout(a.subs)
    hop = {k: with_server(k, lambda port, pid: run_point(port, pid, a.subs, a.seconds, "low")) for k in ("bare", "relay")}
    scale: list[dict] = []
    for n in sorted({50, 100, 200, a.max_subs}):
        if n > a.max_subs:
            break
        r = with_server("relay", lambda port, pid, n=n: run_point(port, pid, n, a.seconds, "low"))
        b = with_server("bare", lambda port, pid, n=n: run_point(port, pid, n, a.seconds, "low"))
        scale.append({"subscribers": n, "relay_cpu_cores": r["cpu_cores"], "relay_delivered": r["delivered"],
                      "bare_cpu_cores": b["cpu_cores"], "bare_delivered": b["delivered"]})
    ok = [s["subscribers"] for s in scale if s["relay_cpu_cores"] < 1.0 and s["relay_delivered"] >= 0.95]
    out = {
        "hop_latency": {"subscribers": a.subs, "relay_p50_ms": hop["relay"]["p50_ms"], "relay_p99_ms": hop["relay"]["p99_ms"],
                        "bare_p50_ms": hop["bare"]["p50_ms"], "bare_p99_ms": hop["bare"]["p99_ms"],
                        "added_p50_ms": round(hop["relay"]["p50_ms"] - hop["bare"]["p50_ms"], 3),
                        "added_p99_ms": round(hop["relay"]["p99_ms"] - hop["bare"]["p99_ms"], 3), "goal_p99_ms": 2.0},
        "core_fanout": core,
        "subscribers_per_core": {"points": scale, "max_under_one_core": max(ok) if ok else 0, "goal": 200},
        "capture_to_decode": None if a.no_browser else browser_latency(a.browser_seconds),
    }
    if a.json:
        print(json.dumps(out, indent=1))
        return
    h = out["hop_latency"]
    print(f"Latency through one relay hop, {a.subs} subscribers (audio + low video), send -> receive on loopback")
    print(f"{'':22}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'bare forwarder':22}{h['bare_p50_ms']:>10.3f}{h['bare_p99_ms']:>10.3f}")
    print(f"{'relay (MediaHub)':22}{h['relay_p50_ms']:>10.3f}{h['relay_p99_ms']:>10.3f}")
    print(f"{'added by relay':22}{h['added_p50_ms']:>10.3f}{h['added_p99_ms']:>10.3f}   (goal p99 < 2 ms)")
    c = out["core_fanout"]
    print(f"\nOne chunk fanned out to {c['links']} links in-process (decisions + queues only)")
    print(f"{'plain deques':22}{c['bare_p50_ms']:>10.4f}{c['bare_p99_ms']:>10.4f}")
    print(f"{'relay core':22}{c['relay_p50_ms']:>10.4f}{c['relay_p99_ms']:>10.4f}")
    print()
    print("WebSocket subscribers served by one node (server process CPU, share of messages delivered)")
    print(f"{'subs':>6}{'relay cores':>13}{'relay deliv':>13}{'bare cores':>12}{'bare deliv':>12}")
    for s in scale:
        print(f"{s['subscribers']:>6}{s['relay_cpu_cores']:>13.2f}{s['relay_delivered']:>13.3f}{s['bare_cpu_cores']:>12.2f}{s['bare_delivered']:>12.3f}")
    print(f"max subscribers under one core with >= 95 % delivered: {out['subscribers_per_core']['max_under_one_core']} (goal 200)")
    print_browser(out["capture_to_decode"])


def print_browser(b: dict | None) -> None:
    print()
    if b is None or "skipped" in b:
        print(f"capture -> decoded latency in Chromium: skipped ({(b or {}).get('skipped', '--no-browser')})")
        return
    print(f"Capture -> decoded latency in Chromium, {b['seconds']:.0f} s, presenter at HQ (ms; goal audio p95 < 150)")
    print(f"{'player page':40}{'frames':>8}{'p50':>8}{'p95':>8}{'p99':>8}")
    r = b["loop_audio"]
    cells = "".join(f"{'-' if r[x] is None else r[x]:>8}" for x in ("p50_ms", "p95_ms", "p99_ms"))
    print(f"{'bare in-browser loop audio (baseline)':40}{r['frames']:>8}{cells}")
    for k, label in (("one_node", "one node alone (its own player)"),
                     ("end_2_links", "chain: end hall (HQ->relay->end)")):
        for name in ("audio", "video"):
            r = b[f"{k}_{name}"]
            cells = "".join(f"{'-' if r[x] is None else r[x]:>8}" for x in ("p50_ms", "p95_ms", "p99_ms"))
            print(f"{label + ' ' + name:40}{r['frames']:>8}{cells}")
        pl = b[f"{k}_player"]
        print(f"{'':40}jitter buffer {pl['bufferedMs']} ms (target {pl['targetMs']}), underruns {pl['audioUnderruns']}")
    print(f"CPU (cores) while measuring: {b['cpu_cores']}")
    print(f"audio p95 added by the two mesh links (chain - one node): {b['added_by_2_links_audio_p95_ms']} ms; by the nodes and links "
          f"over the bare loop: {b['added_by_nodes_audio_p95_ms']} ms (load average {b['load_average_1min']})")


if __name__ == "__main__":
    main()
