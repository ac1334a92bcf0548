"""The guides' commands as written, without --data-dir: `meshmeet chair-pin`, `meshmeet status`,
`meshmeet briefing start|stop` and `meshmeet doctor` find the node by the default data dir rule
(here $MESHMEET_DATA_DIR, as the systemd unit sets it; /var/lib/meshmeet on an installed box)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nodeproc import HANG_GUARD_S, NodeProcess, make_commune, meshmeet, stop_all

pytestmark = pytest.mark.slow


def run(data_dir, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MESHMEET_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "meshmeet", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=HANG_GUARD_S)


def test_guide_commands_work_without_data_dir(tmp_path):
    hq_dir, [(hall_dir, code)] = make_commune(tmp_path, 1)
    assert run(hq_dir, "chair-pin", "--pin-stdin", stdin="246810\n").returncode == 0
    assert (hq_dir / "chair-pin").exists()
    nodes = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        meshmeet("join", "--data-dir", str(hall_dir), "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns", code)
        status = run(hq_dir, "status")
        assert status.returncode == 0 and "UBND xã" in status.stdout, status.stderr
        hall = NodeProcess(hall_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(hall)
        started = run(hq_dir, "briefing", "start")
        assert started.returncode == 0 and "briefing started" in started.stdout, started.stderr
        assert run(hq_dir, "briefing", "stop").returncode == 0
        refused = run(hall_dir, "briefing", "start")  # answered by the hall's node, not by argparse
        assert refused.returncode == 1 and "only HQ or a backup site" in refused.stderr, refused.stderr
        doctor = run(hall_dir, "doctor")
        assert doctor.returncode in (0, 1) and "[ OK ] node" in doctor.stdout
    finally:
        stop_all(nodes)
    # With no data dir at all, a command names the dir it looked in.
    missing = run(tmp_path / "nowhere", "status")
    assert missing.returncode != 0 and str(tmp_path / "nowhere") in missing.stderr
