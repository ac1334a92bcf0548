"""The hall player's jitter buffer (static/media/jitter.js), run as it is in V8 (node): bounded to
40-300 ms, following measured jitter, growing after a stall or an underrun, shrinking when the
network is smooth. (The playout worklet imports the same module in Chromium; the browser tests run it.)"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

JS = Path(__file__).resolve().parent.parent / "meshmeet" / "web" / "static" / "media" / "jitter.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: cannot run jitter.js")

RUNNER = """
import { JitterBuffer, MIN_MS, MAX_MS } from './jitter.mjs';
import fs from 'fs';
const cases = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = cases.map((events) => {
  const jb = new JitterBuffer();
  const targets = [];
  for (const [kind, now, ts, dur] of events) {
    if (kind === 'a') jb.arrival(now, ts, dur); else jb.underrun(now);
    targets.push(jb.targetMs(now));
  }
  return { targets, jitter: jb.jitterMs, bounds: [MIN_MS, MAX_MS] };
});
console.log(JSON.stringify(out));
"""


def run_js(tmp_path: Path, cases: list[list[tuple]]) -> list[dict]:
    (tmp_path / "jitter.mjs").write_text(JS.read_text())
    (tmp_path / "run.mjs").write_text(RUNNER)
    res = subprocess.run([NODE, "run.mjs"], cwd=tmp_path, input=json.dumps(cases), capture_output=True,
                         text=True, check=True, timeout=60)
    return json.loads(res.stdout)


def stream(seconds: float, frame_ms: int, delay_ms, start_ms: float = 0.0) -> list[tuple]:
    """Arrivals of consecutive frames: frame k (media time k x frame) arrives at its time + delay_ms(k)."""
    ev, k = [], 0
    arrivals = []
    while k * frame_ms < seconds * 1000:
        arrivals.append((start_ms + k * frame_ms + delay_ms(k), k * frame_ms * 1000))
        k += 1
    for now, ts in sorted(arrivals):
        ev.append(("a", now, ts, frame_ms))
    return ev


def test_follows_the_network(tmp_path: Path) -> None:
    rng = random.Random(7)
    smooth = stream(120, 20, lambda k: 50.0)
    jittery = stream(30, 20, lambda k: 80 + rng.uniform(-30, 30))
    stall = stream(10, 20, lambda k: 50.0) + [("a", 10_000 + 50 + 200, 10_000_000, 20)]  # one frame 200 ms late
    underrun = stream(10, 20, lambda k: 50.0) + [("u", 10_060, 0, 0)]
    long_frames = stream(60, 60, lambda k: 50.0)
    short_smooth = stream(20, 20, lambda k: 50.0)
    r = run_js(tmp_path, [smooth, jittery, stall, underrun, long_frames, short_smooth])
    lo, hi = r[0]["bounds"]
    assert (lo, hi) == (40, 300)
    assert r[0]["targets"][0] >= 100  # cautious until measured
    assert r[0]["targets"][-1] <= 60 and r[0]["jitter"] < 1  # smooth for two minutes: a small buffer
    assert r[1]["jitter"] > 10 and r[1]["targets"][-1] >= 20 + 3 * r[1]["jitter"]  # covers ~3 jitters
    assert r[1]["targets"][-1] > r[0]["targets"][-1]
    assert r[2]["targets"][-1] >= 200 and r[2]["targets"][-1] - r[2]["targets"][-2] >= 100  # a stall: at once
    assert r[3]["targets"][-1] - r[3]["targets"][-2] >= 39  # an underrun adds 40 ms
    assert r[4]["targets"][-1] >= 60 + 20  # 60 ms frames: at least a frame and the margin
    # the cautious start fades within 20 s of smooth arrivals (decaying like a measured peak, 2 %/s,
    # it kept the target at ~107 ms: every voice ~50 ms later than it needed to be for a minute)
    assert r[5]["targets"][-1] <= 60, r[5]["targets"][-1]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("aau"), st.floats(0, 500), st.floats(-1e6, 1e7), st.sampled_from([20, 40, 60, 0, -5])),
                max_size=200))
def test_bounded_whatever_arrives(tmp_path_factory, events) -> None:
    now, ev = 0.0, []
    for kind, dt, ts, dur in events:
        now += dt
        ev.append((kind, now, ts, dur))
    r = run_js(tmp_path_factory.mktemp("jb"), [ev])[0]
    assert all(40 <= t <= 300 for t in r["targets"])
