"""The testbed with real processes: one network namespace per node, veth links, the link emulator,
a real `meshmeet run` in each. A chain and a star; cut links and kill the root; measure reconvergence
(printed, never asserted against a time: waits are hang guards). Needs root, ip, tc and iptables."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshmeet.sim.scenario import load_scenario
from meshmeet.testbed import netns
from meshmeet.testbed.bed import Testbed
from meshmeet.testbed.plan import make_plan, run_prefix

pytestmark = pytest.mark.slow

WHY_NOT = netns.missing_requirements()
needs_testbed = pytest.mark.skipif(WHY_NOT is not None, reason=f"testbed unavailable: {WHY_NOT}")
REPO = Path(__file__).resolve().parents[1]


def _bed(tmp_path: Path, run: str, scenario: dict) -> Testbed:
    netns.cleanup(run_prefix(run))
    return Testbed(make_plan(load_scenario(scenario), run), tmp_path / "work")


def _whole(bed: Testbed, label: str, since: float | None = None) -> float:
    m = bed.wait_whole(label, since=since)
    assert m.seconds is not None, f"{label}: tree never whole ({m.verdict.why})"
    print(f"{label}: tree whole after {m.seconds:.3f} s ({m.polls} polls)")
    return m.seconds


def _parents(bed: Testbed) -> dict[str, str | None]:
    return {node: tree["parent"] for node, tree in bed.trees().items()}


@needs_testbed
def test_chain_root_kill_and_link_cut(tmp_path):
    bed = _bed(tmp_path, "tchain", {
        "nodes": [{"id": "hq", "role": "hq"}, {"id": "bk", "role": "backup"}, {"id": "t1"}, {"id": "t2"}],
        "links": [{"a": "hq", "b": "bk", "kind": "lan"}, {"a": "bk", "b": "t1", "kind": "lan"},
                  {"a": "t1", "b": "t2", "kind": "4g", "delay_s": 0.02}],
    })
    try:
        bed.prepare()
        bed.up()
        assert sorted(netns.list_netns(bed.plan.prefix)) == sorted(h.netns for h in bed.plan.hosts)
        _whole(bed, "start")
        assert _parents(bed) == {"hq": None, "bk": "hq", "t1": "bk", "t2": "t1"}
        # The emulator's delay shows in the link RTT the node measures (one delay each way).
        rtt = next(l["rtt_ms"] for l in bed.status("t2")["links"] if l["state"] == "up")
        assert rtt is None or rtt >= 40.0

        bed.stop_node("hq")                       # SIGKILL: a crash
        _whole(bed, "root killed")
        assert {t["root"] for t in bed.trees().values()} == {"bk"}

        bed.set_link("bk", "t1", up=False)        # cut the cable: {bk} and {t1, t2}
        _whole(bed, "link bk~t1 cut")
        trees = bed.trees()
        assert trees["bk"]["root"] == "bk" and trees["t1"]["root"] == trees["t2"]["root"] in ("t1", "t2")

        bed.start_node("hq")
        bed.set_link("bk", "t1", up=True)
        _whole(bed, "root back and link restored")
        assert _parents(bed) == {"hq": None, "bk": "hq", "t1": "bk", "t2": "t1"}
    finally:
        removed = bed.down()
    assert sorted(removed) == sorted(h.netns for h in bed.plan.hosts)
    assert netns.list_netns(bed.plan.prefix) == []


@needs_testbed
def test_star_parent_link_loss_reroutes_and_root_loss_splits(tmp_path):
    bed = _bed(tmp_path, "tstar", {
        "nodes": [{"id": "hq", "role": "hq"}, {"id": "h1", "role": "backup"}, {"id": "h2"}, {"id": "h3"}, {"id": "h4"}],
        "links": [{"a": "hq", "b": h, "kind": "lan"} for h in ("h1", "h2", "h3", "h4")]
                 + [{"a": "h1", "b": "h2", "kind": "4g", "loss": 0.0}],
    })
    try:
        bed.prepare()
        bed.up()
        _whole(bed, "start")
        assert _parents(bed) == {"hq": None, "h1": "hq", "h2": "hq", "h3": "hq", "h4": "hq"}

        bed.set_link("hq", "h2", up=False)        # h2's parent link: it must reroute through h1
        _whole(bed, "parent link hq~h2 cut")
        assert _parents(bed)["h2"] == "h1"
        assert {t["root"] for t in bed.trees().values()} == {"hq"}

        bed.stop_node("hq")                       # the hub dies: {h1, h2} under the backup, h3 and h4 alone
        _whole(bed, "root killed")
        trees = bed.trees()
        assert trees["h1"]["root"] == trees["h2"]["root"] == "h1"
        assert trees["h3"]["root"] == "h3" and trees["h4"]["root"] == "h4"
    finally:
        bed.down()
    assert netns.list_netns(bed.plan.prefix) == []


@needs_testbed
def test_down_cleans_up_after_a_crashed_driver(tmp_path):
    """A namespace and a process left behind by a killed `up` are removed by `scripts/testbed down`."""
    prefix = run_prefix("tcrash")
    netns.run(["ip", "netns", "add", prefix + "left"])
    sleeper = subprocess.Popen(["ip", "netns", "exec", prefix + "left", "sleep", "300"])
    try:
        deadline = time.monotonic() + 30           # hang guard: `ip netns exec` enters, then execs
        while netns.pids_in(prefix + "left") != [sleeper.pid] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert netns.pids_in(prefix + "left") == [sleeper.pid]
        out = subprocess.run([sys.executable, str(REPO / "scripts" / "testbed"), "down", "--run", "tcrash",
                              "--work", str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert sleeper.wait(timeout=30) != 0      # it was signalled
        assert netns.list_netns(prefix) == []
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        netns.cleanup(prefix)


def test_cli_says_why_it_cannot_run_without_a_testbed(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "testbed"), "status", "--run", "tnone",
                          "--work", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "testbed" in out.stderr
