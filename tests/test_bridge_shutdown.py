"""Ctrl-C on a real node process: trio owns SIGINT, the gateway closes WebSockets with 1001,
its thread is joined and the process exits on its own (the failure this design replaced hung).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import trio

from test_bridge import ClientLoop, WsClient

REPO = Path(__file__).resolve().parents[1]
# Not a speed goal: only so that a node that never exits fails the test instead of hanging the run.
COMMUNICATE_TIMEOUT_S = 120

NODE = r"""
import signal, threading, trio
# A parent that ignores SIGINT (nohup, some CI runners) passes SIG_IGN on to us: trio would then
# never see the test's Ctrl-C. Restore the default handling first, as a shell does for a foreground job.
signal.signal(signal.SIGINT, signal.default_int_handler)
from meshmeet.web.gateway_lifecycle import open_web_gateway

async def main():
    gw = None
    async def api(name, args):
        return {"subscribers": await gw.subscriber_count()}
    async with open_web_gateway(None, host="127.0.0.1", port=0, api=api) as gw:
        print(gw.url, flush=True)
        async def publish_forever():
            i = 0
            while True:
                await gw.publish("live", {"i": i})
                i += 1
                await trio.sleep(0.001)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_forever)
try:
    trio.run(main)
except* KeyboardInterrupt:
    left = [t.name for t in threading.enumerate() if t.name.startswith("meshmeet-web-")]
    print("interrupted cleanly, gateway threads left:", left, flush=True)
"""


@pytest.fixture
def clients():
    c = ClientLoop()
    yield c
    c.close()


@pytest.mark.parametrize("attempt", range(3))
async def test_ctrl_c_closes_websockets_and_exits(clients, attempt):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", NODE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        url = (await trio.to_thread.run_sync(proc.stdout.readline)).strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if not url else url
        ws = await WsClient(clients, url.replace("http://", "ws://") + "/ws/live").connect()
        await ws.wait_count(3)  # subscribed and receiving the stream

        def subscribers() -> int:
            with urllib.request.urlopen(url + "/api/status") as r:
                return json.loads(r.read())["subscribers"]

        assert await trio.to_thread.run_sync(subscribers) == 1
        proc.send_signal(signal.SIGINT)
        try:
            out, err = await trio.to_thread.run_sync(lambda: proc.communicate(timeout=COMMUNICATE_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the node did not exit on SIGINT within {COMMUNICATE_TIMEOUT_S} s: {out!r} {err!r}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "interrupted cleanly, gateway threads left: []" in out, (out, err)
    assert await ws.wait_closed() == 1001
