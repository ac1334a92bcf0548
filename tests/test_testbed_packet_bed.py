"""`scripts/testbed` with a packet-profiled link: real nodes whose own TCP crosses the packet forwarder.

up --profile puts the link on the forwarder (the node-measured RTT shows the profile's delay), shape
changes it live, down removes the forwarder's namespace with the rest; a bad --profile is refused
with a clear message before anything is built. Needs root (skips otherwise); waits are hang guards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshmeet.testbed import netns
from meshmeet.testbed.plan import run_prefix

pytestmark = pytest.mark.slow

WHY_NOT = netns.missing_requirements() or (None if os.path.exists("/dev/net/tun") else "no /dev/net/tun")
needs_root = pytest.mark.skipif(WHY_NOT is not None, reason=f"packet testbed unavailable: {WHY_NOT}")
REPO = Path(__file__).resolve().parents[1]
SCENARIO = """
name = "packet-pair"
[[nodes]]
id = "hq"
role = "hq"
[[nodes]]
id = "h1"
[[links]]
a = "hq"
b = "h1"
kind = "4g"
detect_s = 15.0
"""
SLOW = "delay_ms=100,rate=2M,queue_ms=300"
GUARD_S = 120.0


def _tb(*args: str, work: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "testbed"), *args, "--work", str(work)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def _rtt(work: Path, run: str) -> float | None:
    from meshmeet.testbed.bed import Testbed
    from meshmeet.testbed.plan import make_plan
    from meshmeet.sim.scenario import load_scenario

    bed = Testbed(make_plan(load_scenario(work / "scenario.toml"), run), work)
    links = [l for l in bed.status("h1")["links"] if l.get("state") == "up"]
    return links[0].get("rtt_ms") if links else None


def _wait_rtt(work: Path, run: str, ok) -> float | None:
    deadline, rtt = time.monotonic() + GUARD_S, None
    while time.monotonic() < deadline:
        rtt = _rtt(work, run)
        if rtt is not None and ok(rtt):
            return rtt
        time.sleep(0.5)
    return rtt


@needs_root
def test_up_with_a_profile_shape_live_and_down(tmp_path):
    run = f"pb{os.getpid() % 0xFFFFF:x}"[:8]
    work = tmp_path / "work"
    scenario = tmp_path / "pair.toml"
    scenario.write_text(SCENARIO)
    netns.cleanup(run_prefix(run))
    try:
        out = _tb("up", str(scenario), "--run", run, "--profile", f"hq~h1={SLOW}", work=work)
        assert out.returncode == 0, out.stderr
        names = netns.list_netns(run_prefix(run))
        assert run_prefix(run) + "_link0" in names
        status = _tb("status", "--run", run, "--json", work=work)
        assert status.returncode == 0 and json.loads(status.stdout)["whole"]
        # the nodes' own link RTT shows the forwarder's 100 ms each way
        slow = _wait_rtt(work, run, lambda r: r >= 180)
        print(f"link RTT with {SLOW}: {slow} ms")
        assert slow is not None and slow >= 180

        out = _tb("shape", "hq", "h1", "A", "--run", run, work=work)
        assert out.returncode == 0, out.stderr
        fast = _wait_rtt(work, run, lambda r: r < 50)
        print(f"link RTT after shape A: {fast} ms")
        assert fast is not None and fast < 50

        bad = _tb("shape", "hq", "h1", "rate=1", "--run", run, work=work)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr and "profile" in bad.stderr
    finally:
        out = _tb("down", "--run", run, work=work)
    assert out.returncode == 0, out.stderr
    assert netns.list_netns(run_prefix(run)) == []


@needs_root
def test_a_bad_profile_is_refused_before_anything_is_built(tmp_path):
    run = f"pq{os.getpid() % 0xFFFFF:x}"[:8]
    scenario = tmp_path / "pair.toml"
    scenario.write_text(SCENARIO)
    for bad in ("hq~h9=C", "hq~h1=Z", "hq-h1=C", "hq~h1=loss=2"):
        out = _tb("up", str(scenario), "--run", run, "--profile", bad, work=tmp_path / "work")
        assert out.returncode != 0 and "Traceback" not in out.stderr, (bad, out.stderr)
        assert "profile" in out.stderr or "link" in out.stderr or "A~B" in out.stderr
        assert netns.list_netns(run_prefix(run)) == []


def test_profiles_listing_needs_no_root():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "testbed"), "profiles"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0 and all(f"  {p}  " in out.stdout for p in "ABCDE")
    assert "queue_bytes=16000" in out.stdout
