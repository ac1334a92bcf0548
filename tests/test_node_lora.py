"""LoRa in real `meshmeet run` processes: the commune key travels over IP links, then an alert
crosses emulated modems (a `meshmeet lora emulate` process on ptys) with no IP link at all."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from meshmeet import config as config_mod
from nodeproc import NodeProcess, meshmeet, stop_all, wait_for

pytestmark = pytest.mark.slow


def set_lora(data_dir: Path, port: str, **extra) -> None:
    cfg = config_mod.load(data_dir)
    lora = config_mod.LoraSettings(port=port, preset="fast", beacon_s=5.0, **extra)
    config_mod.save(data_dir, dataclasses.replace(cfg, lora=lora))


class Emulator:
    """A `meshmeet lora emulate` child process; `paths` maps radio id to its pty."""

    def __init__(self, *args: str, log_path: Path | None = None) -> None:
        self.log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        verbose = ["-v"] if log_path else []
        self.proc = subprocess.Popen([sys.executable, "-m", "meshmeet", *verbose, "lora", "emulate", "--json", *args],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("emulator did not start")
        self.paths = {int(k): v for k, v in json.loads(line).items()}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def lora(node: NodeProcess) -> dict:
    return node.status()["lora"]


def commune(tmp_path: Path, halls: int) -> tuple[Path, list[Path], NodeProcess]:
    """HQ running, `halls` halls joined (not running)."""
    hq_dir = tmp_path / "hq"
    meshmeet("init", "--data-dir", str(hq_dir), "--commune", "Xã Sóng", "--site", "UBND xã")
    codes = [meshmeet("invite", "--data-dir", str(hq_dir), "--site", f"Thôn {i}", "--address", "127.0.0.1:1").stdout.split()[0]
             for i in range(1, halls + 1)]
    hq = NodeProcess(hq_dir, mdns=False)
    dirs = []
    for i, code in enumerate(codes, 1):
        d = tmp_path / f"hall{i}"
        meshmeet("join", "--data-dir", str(d), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        dirs.append(d)
    return hq_dir, dirs, hq


def test_key_over_ip_then_alert_over_lora_only(tmp_path):
    nodes: list[NodeProcess] = []
    emulator = None
    try:
        hq_dir, (h1_dir, h2_dir), hq = commune(tmp_path, 2)
        nodes.append(hq)
        assert lora(hq)["key"] == "ok" and lora(hq)["enabled"] is False
        # Phase 1: the key travels over IP. Hall 2 links only to hall 1, so hall 1 must pass it on.
        h1 = NodeProcess(h1_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(h1)
        wait_for(lambda: lora(h1)["key"] == "ok", "hall 1 gets the LoRa key from HQ")
        h2 = NodeProcess(h2_dir, "--peer", f"127.0.0.1:{h1.mesh_port}", mdns=False)
        nodes.append(h2)
        wait_for(lambda: lora(h2)["key"] == "ok", "hall 2 gets the LoRa key through hall 1")
        key = (hq_dir / "lora.key").read_bytes()
        for d in (h1_dir, h2_dir):
            assert (d / "lora.key").read_bytes() == key
            assert stat.S_IMODE(os.stat(d / "lora.key").st_mode) == 0o600
        stop_all(nodes)
        nodes.clear()

        # Phase 2: no IP peers, no mDNS; three radios in a chain HQ(1) - hall 1(2) - hall 2(3).
        emulator = Emulator("--nodes", "3", log_path=tmp_path / "emulator.log")
        for radio, d in zip((1, 2, 3), (hq_dir, h1_dir, h2_dir)):
            set_lora(d, emulator.paths[radio])
        hq, h1, h2 = (NodeProcess(d, mdns=False) for d in (hq_dir, h1_dir, h2_dir))
        nodes += [hq, h1, h2]
        for n in nodes:
            wait_for(lambda: lora(n)["state"] == "up", f"{n.data_dir.name} LoRa up", proc=n)
            assert [l for l in n.status()["links"] if l["transport"] != "lora"] == []  # no IP link anywhere

        # Beacons make direct neighbours show as LoRa links (only neighbours: beacons are not relayed).
        def neighbours(n: NodeProcess) -> set[str]:
            return {l["site"] for l in lora(n)["links"] if l["state"] == "up" and l["transport"] == "lora"
                    and l["relays"] == 0}

        wait_for(lambda: neighbours(h1) == {"UBND xã", "Thôn 2"}, "hall 1 hears HQ and hall 2", proc=h1)
        wait_for(lambda: neighbours(h2) == {"Thôn 1"}, "hall 2 hears hall 1 only", proc=h2)
        wait_for(lambda: neighbours(hq) == {"Thôn 1"}, "HQ hears hall 1 only", proc=hq)

        text = "Khẩn: bão số 3, họp chuyển sang 14 giờ"
        sent = json.loads(meshmeet("lora", "alert", "--data-dir", str(hq_dir), text, "--json").stdout)
        assert sent["direction"] == "sent" and sorted(sent["missing"]) == [2, 3]

        def has_alert(n: NodeProcess) -> bool:
            return any(a["text"] == text and a["direction"] == "received" and a["source"] == 1
                       for a in lora(n)["alerts"])

        wait_for(lambda: has_alert(h2), "the alert reaches the far hall over two LoRa hops", proc=h2)
        wait_for(lambda: has_alert(h1), "the alert reaches the near hall", proc=h1)
        wait_for(lambda: sorted(next(a for a in lora(hq)["alerts"] if a["id"] == sent["id"])["acked_by"]) == [2, 3],
                 "both halls' acks back at HQ", proc=hq)
        record = next(a for a in lora(hq)["alerts"] if a["id"] == sent["id"])
        assert record["missing"] == [] and set(record["acked_sites"]) == {"Thôn 1", "Thôn 2"}

        # The airtime block is there and within budget.
        for n in nodes:
            air = lora(n)["airtime"]
            assert 0 < air["used_s"] <= air["budget_s_per_hour"] == 36.0
            assert set(air["queued"]) == {"alert", "control", "tally", "beacon"}

        # Attendance from the far hall reaches HQ over LoRa and is acked.
        meshmeet_api(h2, "lora_send", {"kind": "attendance", "meeting": 3, "present": 41, "expected": 45, "dest": 1})
        wait_for(lambda: any(m["kind"] == "attendance" and m["present"] == 41 and m["site"] == "Thôn 2"
                             for m in lora(hq)["received"]), "attendance from hall 2 at HQ", proc=hq)

        # A hall may not raise an alert (and says why in both languages).
        refused = meshmeet("lora", "alert", "--data-dir", str(h1_dir), "giả mạo", check=False)
        assert refused.returncode != 0 and "HQ" in refused.stderr and "Traceback" not in refused.stderr

        # Restart the far hall: the counter mark and the alert survive; the alert is not shown twice.
        mark = json.loads((h2_dir / "lora-state.json").read_text())["reserved"]
        assert mark > 0
        h2.stop()
        nodes.remove(h2)
        h2 = NodeProcess(h2_dir, mdns=False)
        nodes.append(h2)
        assert sum(a["text"] == text for a in lora(h2)["alerts"]) == 1
        wait_for(lambda: lora(h2)["state"] == "up", "hall 2 LoRa up again", proc=h2)
        wait_for(lambda: json.loads((h2_dir / "lora-state.json").read_text())["reserved"] > mark,
                 "hall 2 resumes above its old counter mark (its beacon needed a new mark)", proc=h2)
    finally:
        stop_all(nodes)
        if emulator is not None:
            emulator.stop()


def meshmeet_api(node: NodeProcess, name: str, args: dict) -> dict:
    import urllib.request

    req = urllib.request.Request(f"{node.url}/api/{name}", data=json.dumps(args).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **node.token_header()})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_lora_check_against_the_emulator(tmp_path):
    hq_dir = tmp_path / "hq"
    meshmeet("init", "--data-dir", str(hq_dir), "--commune", "Xã Sóng", "--site", "UBND xã")
    missing = meshmeet("lora", "check", "--data-dir", str(hq_dir), check=False)
    assert missing.returncode != 0 and "[lora]" in missing.stderr and "Traceback" not in missing.stderr
    good, silent = Emulator("--nodes", "1"), Emulator("--nodes", "1", "--behaviour", "silent")
    try:
        set_lora(hq_dir, good.paths[1])
        report = json.loads(meshmeet("lora", "check", "--data-dir", str(hq_dir), "--json").stdout)
        assert report["ok"] is True and report["applied"]["command"] == "AT+P2P=921500000:7:250:0:16:14"
        assert report["budget_s_per_hour"] == 36.0
        plain = meshmeet("lora", "check", "--data-dir", str(hq_dir)).stdout
        assert "36 s" in plain

        set_lora(hq_dir, good.paths[1], freq_hz=868_000_000, power_dbm=20)
        bad = meshmeet("lora", "check", "--data-dir", str(hq_dir), check=False)
        assert bad.returncode == 1
        assert "868.000 MHz" in bad.stdout and "Vietnam" in bad.stdout and "above the 14 dBm limit" in bad.stdout

        set_lora(hq_dir, silent.paths[1])
        quiet = meshmeet("lora", "check", "--data-dir", str(hq_dir), check=False)
        assert quiet.returncode == 1 and "did not answer" in quiet.stdout
    finally:
        good.stop()
        silent.stop()
