"""The two-voice benchmark's arithmetic (scripts/bench/voice_latency.py): mouth-to-ear pairing of
encoder-input times with the playout worklet's position reports, percentiles, tone levels, and the
echo test's microphone file. Pure functions, no browser."""

from __future__ import annotations

import importlib.util
import math
import wave
from pathlib import Path

from hypothesis import given, settings, strategies as st

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "voice_latency.py"
spec = importlib.util.spec_from_file_location("voice_latency", BENCH)
VL = importlib.util.module_from_spec(spec)
spec.loader.exec_module(VL)

REPORT_US = 4 * 128 / 48000 * 1e6  # the worklet's report spacing


def feed(n: int, start_us: float, epoch0: float, jitter=lambda i: 0.0) -> list[tuple[float, float]]:
    """n 20 ms frames: timestamp and when each reached the encoder (its last sample captured)."""
    return [(start_us + i * 20_000, epoch0 + (i + 1) * 20 + jitter(i)) for i in range(n)]


def reports(first_ts: float, last_ts: float, epoch_of_ts, holes=()) -> list[tuple[float, float]]:
    out, ts = [], first_ts
    while ts <= last_ts:
        if not any(a <= ts < b for a, b in holes):
            out.append((ts, epoch_of_ts(ts)))
        ts += REPORT_US
    return out


@settings(max_examples=60, deadline=None)
@given(delay_ms=st.floats(20, 2000), phase_us=st.floats(0, REPORT_US), start_us=st.integers(0, 10**9))
def test_a_constant_delay_is_measured_exactly_whatever_the_report_phase(delay_ms, phase_us, start_us):
    fed = feed(100, start_us, 1.7e12)
    # frame i's first sample (timestamp start + i*20 ms) plays delay_ms after frame i reached the encoder
    epoch_of_ts = lambda ts: 1.7e12 + (ts - start_us) / 1000 + 20 + delay_ms  # noqa: E731
    rendered = reports(start_us - phase_us, start_us + 100 * 20_000, epoch_of_ts)
    lat, unplayed = VL.mouth_to_ear(fed, rendered)
    assert unplayed == 0 and len(lat) == 100
    assert max(abs(x - delay_ms) for x in lat) < 1e-3  # epoch ms near 1.7e12: float resolution ~2e-4 ms


def test_frames_not_played_are_counted_not_measured():
    start = 5_000_000
    fed = feed(50, start, 0.0)
    hole = (start + 400_000, start + 500_000)  # 100 ms the worklet did not play (underrun, skip)
    rendered = reports(start, start + 50 * 20_000, lambda ts: (ts - start) / 1000 + 20 + 100, holes=[hole])
    lat, unplayed = VL.mouth_to_ear(fed, rendered)
    # frames whose timestamp lies > 25 ms after the last report before the hole are not played
    assert 3 <= unplayed <= 5, unplayed
    assert len(lat) + unplayed == 50 and all(abs(x - 100) < 1e-6 for x in lat)
    # nothing rendered at all, or only before the frames: all unplayed
    assert VL.mouth_to_ear(fed, []) == ([], 50)
    assert VL.mouth_to_ear(fed, [(0.0, 0.0)]) == ([], 50)


def test_varying_delay_reported_per_frame_and_summarised():
    fed = feed(20, 0, 0.0)
    # the playout delay grows by 10 ms at frame 10 (the jitter buffer grew): two reports streams joined
    rendered = reports(0, 200_000 - 1, lambda ts: ts / 1000 + 20 + 80) + \
        reports(200_000, 400_000, lambda ts: ts / 1000 + 20 + 90)
    lat, unplayed = VL.mouth_to_ear(fed, rendered)
    assert unplayed == 0 and [round(x) for x in lat] == [80] * 10 + [90] * 10
    s = VL.summary(lat, unplayed)
    assert s == {"frames": 20, "p50_ms": 80.0, "p95_ms": 90.0, "max_ms": 90.0, "unplayed": 0}
    assert VL.summary([]) == {"frames": 0, "p50_ms": None, "p95_ms": None, "max_ms": None, "unplayed": 0}


def test_percentile_is_nearest_rank():
    xs = list(range(1, 101))
    assert VL.percentile(xs, 50) == 50 and VL.percentile(xs, 95) == 95 and VL.percentile(xs, 100) == 100
    assert VL.percentile([7.0], 95) == 7.0 and VL.percentile([], 50) is None


def test_tone_levels_take_the_loudest_of_a_group_per_frame_and_ignore_other_voices():
    hz = [440, 880, 1500, 660]
    rows = [[0, 0, [0.1, 0.0, 0.5, 0.001]], [0, 20_000, [0.0, 0.1, 0.5, 0.001]], [1, 0, [0.9, 0.9, 0.9, 0.9]]]
    got = VL.tone_levels(rows, 0, hz, {"echo": (440, 880), "own": (1500,), "floor": (660,)})
    assert got == {"echo": -20.0, "own": round(20 * math.log10(0.5), 1), "floor": -60.0, "frames": 2}
    assert VL.tone_levels([], 0, hz, {"echo": (440,)}) == {"echo": None, "frames": 0}


def test_the_echo_file_holds_the_own_tone_alone_until_the_echo_delay(tmp_path):
    path = tmp_path / "mic.wav"
    VL.write_mix_wav(path, [(VL.sine(1500), 0.25, 0.0), (VL.alternating((440, 880), 0.5), 0.125, 0.05)], seconds=0.2)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (48000, 1, 2, 9600)
        data = w.readframes(9600)
    x = [int.from_bytes(data[i:i + 2], "little", signed=True) / 32767 for i in range(0, len(data), 2)]
    own = [0.25 * math.sin(2 * math.pi * 1500 * i / 48000) for i in range(len(x))]
    assert max(abs(a - b) for a, b in zip(x[:2400], own[:2400])) < 1e-4  # first 50 ms: no echo yet
    echo = [a - b for a, b in zip(x[2400:], own[2400:])]
    assert abs(max(echo) - 0.125) < 2e-3  # then the echo at its level


def test_median_by_part_shows_whether_the_figure_settles():
    xs = [200.0] * 25 + [150.0] * 25 + [120.0] * 25 + [100.0] * 25
    assert VL.median_by_part(xs) == [200.0, 150.0, 120.0, 100.0]
    assert VL.median_by_part([]) == [None, None, None, None]
    assert VL.median_by_part([5.0], parts=2) == [None, 5.0]
