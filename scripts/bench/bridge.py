"""Benchmark: WebSocket messages/s through the trio<->asyncio bridge vs aiohttp alone.

Two workloads, each measured twice in the same run with the same gateway code (build_app + Hub):
  fan-out  the node publishes M small messages to one topic with N browsers subscribed;
           baseline: publisher on the aiohttp loop itself (no trio, no bridge);
           bridge:   a trio task publishes through open_web_gateway (credit pipe -> hub).
  echo     one browser sends M messages and reads each back;
           baseline: the aiohttp handler republishes directly;
           bridge:   browser -> inbound pipe -> trio task -> publish -> browser.
Browsers are aiohttp clients in a separate process (so they do not share the GIL with the
server). Every client must receive every message (queues sized to never drop); the run
fails loudly otherwise. Usage:

    python scripts/bench/bridge.py [--clients 1,10,50] [--messages 5000] [--payload 100] [--json]

--json prints {"bench": "bridge", "payload_bytes", "messages", "fanout": [{"clients",
"baseline_msgs_per_s", "bridge_msgs_per_s", "baseline_deliveries_per_s",
"bridge_deliveries_per_s", "ratio"}], "echo": {"baseline_msgs_per_s", "bridge_msgs_per_s",
"ratio"}} where ratio = bridge / baseline. This script must never be imported by the package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

HOST = "127.0.0.1"
TOPIC = "bench"
END = "end"


# ------------------------------------------------------------------ client process


async def _client_fanout(url: str, n: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(url, max_msg_size=0) for _ in range(n)]
        print("ready", flush=True)

        async def read(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, float]:
            count = 0
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT and msg.data == END:
                    break
                count += 1
            return count, time.monotonic()

        results = await asyncio.gather(*(read(ws) for ws in sockets))
        print(json.dumps({"counts": [c for c, _ in results], "t_end": max(t for _, t in results)}), flush=True)
        for ws in sockets:
            await ws.close()


async def _client_echo(url: str, m: int, payload: bytes) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        assert line.strip() == "go"
        t0 = time.monotonic()

        async def send() -> None:
            for _ in range(m):
                await ws.send_bytes(payload)

        sender = asyncio.get_running_loop().create_task(send())
        count = 0
        async for msg in ws:
            count += 1
            if count == m:
                break
        seconds = time.monotonic() - t0
        await sender
        print(json.dumps({"count": count, "seconds": seconds}), flush=True)
        await ws.close()


def _spawn_client(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--client", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> dict:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"client process failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------ servers


async def _api(name: str, args: dict) -> dict:
    return {}


async def _baseline_fanout(n: int, m: int, payload: bytes) -> dict:
    from aiohttp import web

    from meshmeet.web.gateway import build_app

    from meshmeet.web.hub import Hub

    hub = Hub(client_queue_messages=m + 2)
    runner = web.AppRunner(build_app(_api, hub), access_log=None, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    url = f"ws://{HOST}:{runner.addresses[0][1]}/ws/{TOPIC}"
    loop = asyncio.get_running_loop()
    proc = _spawn_client("fanout", url, str(n))
    try:
        assert (await loop.run_in_executor(None, proc.stdout.readline)).strip() == "ready"
        while hub.subscriber_count(TOPIC) < n:
            await asyncio.sleep(0.005)
        t0 = time.monotonic()
        for i in range(m):
            hub.publish(TOPIC, payload)
            if i % 64 == 63:
                await asyncio.sleep(0)
        hub.publish(TOPIC, END)
        result = await loop.run_in_executor(None, _finish, proc)
    finally:
        await runner.cleanup()
    return {"counts": result["counts"], "seconds": result["t_end"] - t0}


async def _bridge_fanout(n: int, m: int, payload: bytes) -> dict:
    import trio

    from meshmeet.web.gateway_lifecycle import open_web_gateway

    async with open_web_gateway(None, host=HOST, port=0, api=_api, client_queue_messages=m + 2) as gw:
        url = gw.url.replace("http://", "ws://") + f"/ws/{TOPIC}"
        proc = _spawn_client("fanout", url, str(n))
        assert (await trio.to_thread.run_sync(proc.stdout.readline)).strip() == "ready"
        while await gw.subscriber_count(TOPIC) < n:
            await trio.sleep(0.005)
        t0 = time.monotonic()
        for _ in range(m):
            await gw.publish(TOPIC, payload)
        await gw.publish(TOPIC, END)
        result = await trio.to_thread.run_sync(_finish, proc)
    return {"counts": result["counts"], "seconds": result["t_end"] - t0}


async def _baseline_echo(m: int, payload: bytes) -> dict:
    from aiohttp import web

    from meshmeet.web.gateway import build_app

    from meshmeet.web.hub import Hub

    hub = Hub(client_queue_messages=m + 2)

    async def echo(topic: str, data: bytes | str) -> None:
        hub.publish(topic, data)

    runner = web.AppRunner(build_app(_api, hub, inbound=echo), access_log=None, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    loop = asyncio.get_running_loop()
    proc = _spawn_client("echo", f"ws://{HOST}:{runner.addresses[0][1]}/ws/echo", str(m), str(len(payload)))
    try:
        assert (await loop.run_in_executor(None, proc.stdout.readline)).strip() == "ready"
        while hub.subscriber_count("echo") < 1:
            await asyncio.sleep(0.005)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        return await loop.run_in_executor(None, _finish, proc)
    finally:
        await runner.cleanup()


async def _bridge_echo(m: int, payload: bytes) -> dict:
    import trio

    from meshmeet.web.gateway_lifecycle import open_web_gateway

    async with open_web_gateway(None, host=HOST, port=0, api=_api, client_queue_messages=m + 2) as gw:
        async with trio.open_nursery() as nursery:

            async def echo() -> None:
                async for topic, data in gw.inbound:
                    await gw.publish(topic, data)

            nursery.start_soon(echo)
            proc = _spawn_client("echo", gw.url.replace("http://", "ws://") + "/ws/echo", str(m), str(len(payload)))
            assert (await trio.to_thread.run_sync(proc.stdout.readline)).strip() == "ready"
            while await gw.subscriber_count("echo") < 1:
                await trio.sleep(0.005)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            result = await trio.to_thread.run_sync(_finish, proc)
            nursery.cancel_scope.cancel()
    return result


# ------------------------------------------------------------------ main


def _check_fanout(label: str, result: dict, n: int, m: int) -> None:
    if result["counts"] != [m] * n:
        raise SystemExit(f"{label}: clients received {result['counts']}, expected {m} each")


def run(clients: list[int], m: int, payload_bytes: int) -> dict:
    import trio

    payload = b"x" * payload_bytes
    fanout = []
    for n in clients:
        base = asyncio.run(_baseline_fanout(n, m, payload))
        _check_fanout("baseline", base, n, m)
        bridged = trio.run(_bridge_fanout, n, m, payload)
        _check_fanout("bridge", bridged, n, m)
        b_rate = m / base["seconds"]
        r_rate = m / bridged["seconds"]
        fanout.append(
            {
                "clients": n,
                "baseline_msgs_per_s": round(b_rate),
                "bridge_msgs_per_s": round(r_rate),
                "baseline_deliveries_per_s": round(b_rate * n),
                "bridge_deliveries_per_s": round(r_rate * n),
                "ratio": round(r_rate / b_rate, 3),
            }
        )
    base_echo = asyncio.run(_baseline_echo(m, payload))
    bridge_echo = trio.run(_bridge_echo, m, payload)
    for label, r in (("baseline echo", base_echo), ("bridge echo", bridge_echo)):
        if r["count"] != m:
            raise SystemExit(f"{label}: got {r['count']} of {m} replies")
    eb, er = m / base_echo["seconds"], m / bridge_echo["seconds"]
    return {
        "bench": "bridge",
        "payload_bytes": payload_bytes,
        "messages": m,
        "fanout": fanout,
        "echo": {"baseline_msgs_per_s": round(eb), "bridge_msgs_per_s": round(er), "ratio": round(er / eb, 3)},
    }


def print_table(r: dict) -> None:
    print(f"bridge benchmark: {r['messages']} messages of {r['payload_bytes']} B per run, clients in another process")
    print("baseline = same gateway/hub code, publisher on the aiohttp loop (no trio, no bridge)")
    print()
    head = f"{'workload':<10}{'clients':>8}{'baseline msg/s':>16}{'bridge msg/s':>14}{'ratio':>8}{'baseline deliv/s':>18}{'bridge deliv/s':>16}"
    print(head)
    print("-" * len(head))
    for row in r["fanout"]:
        print(
            f"{'fan-out':<10}{row['clients']:>8}{row['baseline_msgs_per_s']:>16,}{row['bridge_msgs_per_s']:>14,}"
            f"{row['ratio']:>8.2f}{row['baseline_deliveries_per_s']:>18,}{row['bridge_deliveries_per_s']:>16,}"
        )
    e = r["echo"]
    print(f"{'echo':<10}{1:>8}{e['baseline_msgs_per_s']:>16,}{e['bridge_msgs_per_s']:>14,}{e['ratio']:>8.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        mode, url = sys.argv[2], sys.argv[3]
        if mode == "fanout":
            asyncio.run(_client_fanout(url, int(sys.argv[4])))
        else:
            asyncio.run(_client_echo(url, int(sys.argv[4]), b"y" * int(sys.argv[5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,10,50", help="comma-separated browser counts for fan-out")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--payload", type=int, default=100, help="bytes per message")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(REPO))
    result = run([int(c) for c in args.clients.split(",")], args.messages, args.payload)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
