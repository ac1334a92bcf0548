"""scripts/bench/weaklink.py end to end, briefly: three real nodes, profile A, a few seconds per row.

Checks the JSON shape the issue asks for and that frames flowed in every row (no figure is
asserted: it is a measurement). Needs root (skips with the reason otherwise); the timeout is a hang guard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshmeet.testbed import netns

pytestmark = pytest.mark.slow

WHY_NOT = netns.missing_requirements() or (None if os.path.exists("/dev/net/tun") else "no /dev/net/tun")
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(WHY_NOT is not None, reason=f"packet testbed unavailable: {WHY_NOT}")
def test_weaklink_bench_json_shape():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench" / "weaklink.py"), "--json", "--profiles", "A",
                          "--seconds", "3"], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    rows = report["profiles"]["A"]
    assert set(rows) >= {"av", "audio", "udp_red"}
    for mode in ("av", "audio", "udp_red"):
        r = rows[mode]
        assert "error" not in r, r
        assert 0 < r["delivered"] <= r["sent"]
        for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "gaps_over_200ms", "heard_150ms_pct", "heard_300ms_pct"):
            assert key in r
    assert rows["av"]["video_frames"] > 0 and "video_off" in rows["av"]
    assert rows["av"]["frame_ms"] == [20] and rows["av"]["opus_kbps_used"]
    assert report["forwarder_profile_A"]["forwarder"]["answered"] > 0
    assert netns.list_netns("mm-wlbench-") == []
