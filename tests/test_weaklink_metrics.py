"""The weak-link benchmark's figures (scripts/bench/weaklink.py): pure functions over arrival records.

Properties: delivered never exceeds sent and ignores frames outside the run; percentiles are ordered;
% heard grows with the playout delay and counts against frames sent (a lost frame is not heard);
gaps and video-off intervals are found where they are. The CLI refuses bad options clearly.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("weaklink_bench", REPO / "scripts" / "bench" / "weaklink.py")
wl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wl)

MS = 1_000_000


@given(st.integers(1, 300), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 5000)), max_size=300),
       st.floats(0, 200))
@settings(max_examples=150, deadline=None)
def test_audio_metrics_properties(sent, frames, base_ms):
    rx = {"audio": {str(seq): [seq * 20 * MS, seq * 20 * MS + int((base_ms + lat) * MS)] for seq, lat in frames}}
    m = wl.audio_metrics(rx, sent, base_ms)
    inside = {seq for seq, _ in frames if seq < sent}
    assert m["delivered"] == len(inside) <= sent
    if inside:
        assert m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"] <= m["max_ms"] + 0.1
        assert m["heard_150ms_pct"] <= m["heard_300ms_pct"] <= m["delivered_pct"] + 1e-9
    else:
        assert m["p50_ms"] is None and m["heard_300ms_pct"] == 0


def test_audio_metrics_figures():
    # 10 frames sent, one lost, one 250 ms late, one 400 ms late, all above a 40 ms base delay
    lat = {0: 0, 1: 0, 2: 0, 3: 250, 4: 0, 5: 0, 6: 400, 7: 0, 8: 0}
    rx = {"audio": {str(s): [s * 20 * MS, s * 20 * MS + int((40 + l) * MS)] for s, l in lat.items()}}
    m = wl.audio_metrics(rx, 10, 40.0)
    assert m["delivered"] == 9 and m["delivered_pct"] == 90.0
    assert m["p50_ms"] == 0 and m["max_ms"] == 400
    assert m["heard_150ms_pct"] == 70.0 and m["heard_300ms_pct"] == 80.0
    # arrivals (ms): 40 60 80 120 140 180 200, then frame 3 at 350 and frame 6 at 560: one silence > 200 ms
    assert m["gaps_over_200ms"] == 1
    assert wl.audio_metrics({"error": "presenter died"}, 10, 0) == {"error": "presenter died"}


def test_video_off_intervals():
    start = 100.0
    arrive = [start + t for t in (0.05, 0.1, 0.3, 2.0, 2.2, 7.0)]
    rx = {"video": [[0, int(a * 1e9), 0] for a in arrive]}
    m = wl.video_metrics(rx, start, 10.0)
    assert m["video_frames"] == 6
    assert m["video_off"] == [[0.3, 2.0], [2.2, 7.0], [7.0, None]]
    assert wl.video_metrics({"video": []}, start, 10.0)["video_off"] == [[0.0, None]]


def test_bench_refuses_bad_options():
    for args in (["--profiles", "Z"], ["--seconds", "0"], ["--profiles", ""]):
        out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench" / "weaklink.py"), *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "Traceback" not in out.stderr and "--profiles" in out.stderr


def test_status_summary_reads_transport_fields_when_present():
    poll = wl.StatusPoller(None, "relay", "END")
    poll.rows = [
        {"t": 1.0, "peer": "END", "layer": "high", "queue_ms": 0.0},
        {"t": 1.0, "mesh": {"peer": "END", "transport": "tcp", "rtt_ms": 160.0}},
        {"t": 2.0, "peer": "END", "layer": "audio", "queue_ms": 900.0, "transport": "datagram", "loss": 0.03},
        {"t": 3.0, "peer": "END", "layer": "audio", "queue_ms": 10.0, "transport": "datagram", "loss": 0.02},
    ]
    s = poll.summary()
    assert s["relay_layers"] == [[1.0, "high"], [2.0, "audio"]]
    assert s["transport"] == ["datagram"] and s["mesh_transport"] == ["tcp"]
    assert s["relay_queue_ms_max"] == 900.0 and s["mesh_rtt_ms_max"] == 160.0
    assert s["relay_media_link_last"]["loss"] == 0.02
    empty = wl.StatusPoller(None, "relay", "END").summary()
    assert empty["transport"] is None and empty["relay_media_link_last"] is None


def test_cap_metrics_shed_and_restore_times():
    """Capped at 10 s, uncapped at 20 s: the last video frame that got through was sent 0.8 s after
    the cap (later ones were shed), the first one sent after the uncap arrived 2.5 s after it."""
    s0 = 1000.0
    ns = lambda t: int((s0 + t) * 1e9)  # noqa: E731
    video = [[ns(t), ns(t + 0.05), 0] for t in (9.0, 9.5, 10.2, 10.8)]
    video += [[ns(22.4), ns(22.5), 1], [ns(23.0), ns(23.1), 0]]
    audio = {str(i): [ns(10 + i * 0.1), ns(10 + i * 0.1 + 0.1 + 0.01 * i)] for i in range(100)}
    m = wl.cap_metrics({"video": video, "audio": audio}, s0, 10.0, 20.0, 100.0)
    assert m["video_shed_after_cap_s"] == 0.8 and m["video_after_cap_frames"] == 2
    assert m["video_restored_after_uncap_s"] == 2.5
    assert m["capped_audio"]["delivered"] == 100 and 930 <= m["capped_audio"]["p95_ms"] <= 960
    never = wl.cap_metrics({"video": video[:2], "audio": {}}, s0, 10.0, 20.0, 100.0)
    assert never["video_shed_after_cap_s"] == 0.0 and never["video_restored_after_uncap_s"] is None
