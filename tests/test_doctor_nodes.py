"""`meshmeet doctor` against real node processes and real files: a hall whose wall clock is two
minutes fast, a key file made world-readable, a port another program holds, an illegal LoRa power,
a nearly full disk (a real small tmpfs), a node alone on mDNS. Each finding names the fix, and the
exit code says whether anything is wrong."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from meshmeet import config as config_mod
from meshmeet.config import LoraSettings, NodeConfig, parse_host_port
from nodeproc import NodeProcess, meshmeet, make_commune, stop_all, wait_for
from smalldisk import mounted_tmpfs

pytestmark = pytest.mark.slow
SKEW_S = 120.0


def doctor(data_dir: Path, *extra: str) -> tuple[int, dict[str, list[dict]]]:
    done = meshmeet("doctor", "--data-dir", str(data_dir), "--json", *extra, check=False)
    assert done.returncode in (0, 1), done.stderr
    doc = json.loads(done.stdout)
    assert doc["exit_code"] == done.returncode
    by_check: dict[str, list[dict]] = {}
    for f in doc["findings"]:
        assert f["vi"] and f["en"]
        if f["state"] == "problem":
            assert f["fix_vi"] and f["fix_en"], f
        by_check.setdefault(f["check"], []).append(f)
    return done.returncode, by_check


def states(by_check: dict, name: str) -> set[str]:
    return {f["state"] for f in by_check[name]}


def test_doctor_finds_a_fast_clock_an_open_key_and_a_lonely_node(tmp_path):
    hq_dir, [(hall_dir, code)] = make_commune(tmp_path, 1)
    nodes = []
    try:
        hq = NodeProcess(hq_dir)
        nodes.append(hq)
        # Alone: no link, nobody seen on mDNS; both are problems with a fix; keys, disk, ports fine.
        rc, found = doctor(hq_dir, "--min-free-mib", "1")
        assert rc == 1
        assert states(found, "links") == {"problem"} and states(found, "mdns") == {"problem"}
        assert states(found, "keys") == {"ok"} and states(found, "node") == {"ok"} and states(found, "ports") == {"ok"}
        assert states(found, "disk") == {"ok"} and states(found, "lora") == {"skipped"}

        meshmeet("join", "--data-dir", str(hall_dir), "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns", code)
        hall = NodeProcess(hall_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False, clock_offset_s=SKEW_S)
        nodes.append(hall)
        wait_for(lambda: any((s or {}).get("offset_ms") is not None for s in hq.status().get("clock", {}).values()),
                 "HQ to measure the hall's clock")
        rc, found = doctor(hq_dir, "--min-free-mib", "1")
        assert rc == 1 and states(found, "links") == {"ok"}
        [clock] = found["clock"]
        assert clock["state"] == "problem" and "Thôn 1" in clock["en"]
        offset_s = float(clock["en"].split("clock is ")[1].split(" s")[0])
        assert SKEW_S - 5 < offset_s < SKEW_S + 5
        assert "timedatectl" in clock["fix_en"]

        # The hall sees HQ two minutes slow; its mDNS is off, so that check is skipped, not failed.
        wait_for(lambda: any((s or {}).get("offset_ms") is not None for s in hall.status().get("clock", {}).values()),
                 "the hall to measure HQ's clock")
        rc, found = doctor(hall_dir, "--min-free-mib", "1")
        assert rc == 1 and states(found, "mdns") == {"skipped"}
        assert "-1" in found["clock"][0]["en"] and "UBND xã" in found["clock"][0]["en"]

        # A key others can read.
        key = hq_dir / "node.key"
        key.chmod(0o644)
        rc, found = doctor(hq_dir, "--min-free-mib", "1")
        [bad] = [f for f in found["keys"] if f["state"] == "problem"]
        assert str(key) in bad["en"] and bad["fix_en"] == f"chmod 600 {key}"
        key.chmod(0o600)
    finally:
        stop_all(nodes)
    # Stopped: the doctor says so and how to start it.
    rc, found = doctor(hq_dir, "--min-free-mib", "1")
    assert rc == 1 and states(found, "node") == {"problem"} and "systemctl" in found["node"][0]["fix_en"]
    assert "clock" not in found  # nothing to compare with when the node is down


def test_doctor_port_held_by_another_program_and_illegal_lora_power(tmp_path):
    hq_dir, _ = make_commune(tmp_path, 0)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free_port = s.getsockname()[1]
        cfg = NodeConfig(listen=parse_host_port(f"127.0.0.1:{port}"), http=parse_host_port(f"127.0.0.1:{free_port}"),
                         lora=LoraSettings(port="/dev/ttyUSB0", power_dbm=30))
        config_mod.save(hq_dir, cfg)
        rc, found = doctor(hq_dir, "--min-free-mib", "1")
        assert rc == 1
        [held] = [f for f in found["ports"] if f["state"] == "problem"]
        assert f"127.0.0.1:{port} is used by another program" in held["en"] and f":{port}" in held["fix_en"]
        [lora] = found["lora"]
        assert lora["state"] == "problem" and "power 30 dBm is above" in lora["en"]
    finally:
        squatter.close()
    config_mod.save(hq_dir, NodeConfig(listen=parse_host_port(f"127.0.0.1:{port}"),
                                       http=parse_host_port(f"127.0.0.1:{free_port}"),
                                       lora=LoraSettings(port="/dev/ttyUSB0", power_dbm=14)))
    rc, found = doctor(hq_dir, "--min-free-mib", "1")
    assert states(found, "ports") == {"ok"} and states(found, "lora") == {"ok"}


def test_doctor_on_a_nearly_full_disk(tmp_path):
    with mounted_tmpfs(tmp_path, "small", 16 << 20) as mnt:
        data = mnt / "node"
        meshmeet("init", "--data-dir", str(data), "--commune", "Xã Thử", "--site", "UBND xã")
        rc, found = doctor(data)
        [disk] = found["disk"]
        assert rc == 1 and disk["state"] == "problem" and "MiB free" in disk["en"] and "du -sh" in disk["fix_en"]
        rc, found = doctor(data, "--min-free-mib", "1")
        assert states(found, "disk") == {"ok"}


@pytest.mark.flaky(reruns=2)
def test_doctor_on_a_revoked_box_says_revoked_first_not_network(tmp_path):
    """HQ queues the revocation entry to the hall and closes the link at once; the hall must learn
    why it was shut out. (Until 2026-12-07 it sometimes never got the entry, 1 run in 3: the close
    overtook the entry in the writer. test_link_close_order.py reproduces that in one round.)"""
    from meshmeet.membership.datadir import load_roster

    hq_dir, [(hall_dir, code)] = make_commune(tmp_path, 1)
    nodes = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        meshmeet("join", "--data-dir", str(hall_dir), "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns", code)
        hall = NodeProcess(hall_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(hall)
        wait_for(lambda: any(link["state"] == "up" for link in hall.status()["links"]), "the hall's link", proc=hall)
        from meshmeet.doctor.membership import check_revoked

        assert [f.state for f in check_revoked(hall_dir)] == ["ok"]  # linked, a member: nothing to say yet

        meshmeet("revoke", "--data-dir", str(hq_dir), "Thôn 1", "--yes")
        wait_for(lambda: load_roster(hall_dir).is_revoked(2), "the revocation reaches the hall's roster by gossip",
                 timeout=30)
        done = meshmeet("doctor", "--data-dir", str(hall_dir), "--json", "--min-free-mib", "1", check=False)
        findings = json.loads(done.stdout)["findings"]
        assert done.returncode == 1
        first = findings[0]
        assert first["check"] == "member" and first["state"] == "problem"
        assert "THU HỒI" in first["vi"] and "REVOKED" in first["en"] and "#2" in first["en"]
        assert not any(f["check"] in ("links", "mdns", "node", "ports") for f in findings), findings  # no network blame
    finally:
        stop_all(nodes)
