"""Pure arithmetic of the two-voice benchmark (scripts/bench/conference_voices.py): mouth-to-ear
pairing, nearest-rank percentiles, tone levels in dB and the echo test's microphone file.

Inputs are what the pages' probes give (all browsers on one machine share the epoch clock):
  fed       [(timestamp µs, epoch ms)]: when each 20 ms capture frame reached the sender's encoder
            (present.js takeFed(), hall-voice.js voiceProbe() rows [ts, rms, epoch])
  rendered  [(timestamp µs, epoch ms)] of one voice at one player: the playout worklet's position
            (the timestamp of the next sample it plays) and when that sample leaves the output,
            about every 10.7 ms while the voice plays (hall.js probe().rendered rows of that voice)
A decoded sample of timestamp t is the captured sample of timestamp t (the Opus decoder's output
timestamps already take off the codec delay), so frame t's mouth-to-ear is when timestamp t played
less when frame t reached the encoder. Never touches a browser, a node or the network.
"""

from __future__ import annotations

import bisect
import math
import struct
import wave
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

# The worklet reports its position every 4 render quanta (4 x 128 samples = 10.7 ms); a larger step
# between two reports means the voice was not playing in between (underrun, catch-up skip, loss).
RENDER_STEP_MAX_US = 25_000


def played_at(rendered: Sequence[tuple[float, float]], ts_us: float,
              step_max_us: float = RENDER_STEP_MAX_US) -> float | None:
    """Epoch ms at which timestamp `ts_us` played, from the reports sorted by timestamp: the last
    report at or before it, advanced at real time (the worklet plays 1 µs of media per µs). None when
    no report is within `step_max_us` before it (never played: lost, skipped or not yet)."""
    i = bisect.bisect_right(rendered, (ts_us, math.inf)) - 1
    if i < 0:
        return None
    ts, epoch = rendered[i]
    if ts_us - ts > step_max_us:
        return None
    return epoch + (ts_us - ts) / 1000


def mouth_to_ear(fed: Iterable[tuple[float, float]], rendered: Iterable[tuple[float, float]],
                 step_max_us: float = RENDER_STEP_MAX_US) -> tuple[list[float], int]:
    """Per fed frame: ms from reaching the encoder to playing. Returns (latencies, frames never played)."""
    reports = sorted((float(t), float(e)) for t, e in rendered)
    out: list[float] = []
    unplayed = 0
    for ts, at in fed:
        played = played_at(reports, float(ts), step_max_us)
        if played is None:
            unplayed += 1
        else:
            out.append(played - float(at))
    return out, unplayed


def percentile(xs: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def summary(xs: Sequence[float], unplayed: int = 0) -> dict:
    """{frames, p50_ms, p95_ms, max_ms, unplayed} rounded to 0.1 ms."""
    r = (lambda v: None if v is None else round(v, 1))  # noqa: E731
    return {"frames": len(xs), "p50_ms": r(percentile(xs, 50)), "p95_ms": r(percentile(xs, 95)),
            "max_ms": r(max(xs) if xs else None), "unplayed": unplayed}


def median_by_part(xs: Sequence[float], parts: int = 4) -> list[float | None]:
    """The median of each of `parts` equal stretches of xs (in time order): is the figure settling?"""
    n = len(xs)
    stretches = [xs[i * n // parts:(i + 1) * n // parts] for i in range(parts)]
    return [None if not s else round(percentile(s, 50), 1) for s in stretches]


def db(amplitude: float) -> float | None:
    """dB relative to full scale (an amplitude of 1.0); None for silence."""
    return round(20 * math.log10(amplitude), 1) if amplitude > 0 else None


def rms(xs: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in xs) / len(xs)) if xs else 0.0


def tone_levels(levels: Iterable[Sequence], voice: int, hz: Sequence[float],
                groups: dict[str, Sequence[float]]) -> dict:
    """Level (dBFS, RMS over frames) of each named group of frequencies in one voice's frames.

    `levels` rows are the player probe's [voice, ts µs, [amplitude at each of `hz`]]; a group's
    per-frame amplitude is the largest of its frequencies (the chair's tone is 440 or 880 Hz at any
    moment). Returns {group: dBFS, "frames": n}."""
    idx = {f: i for i, f in enumerate(hz)}
    per: dict[str, list[float]] = {g: [] for g in groups}
    n = 0
    for v, _ts, amps in levels:
        if v != voice:
            continue
        n += 1
        for g, fs in groups.items():
            per[g].append(max(amps[idx[f]] for f in fs))
    return {**{g: db(rms(xs)) for g, xs in per.items()}, "frames": n}


def write_mix_wav(path: Path, parts: Sequence[tuple[Callable[[float], float], float, float]],
                  seconds: float = 10.0, rate: int = 48000) -> None:
    """A mono 16-bit wav summing parts (signal(t) in -1..1, amplitude as a fraction of full scale,
    delay s): e.g. a hall's own voice plus an 'acoustic echo' of what its TV plays, delayed."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        x = sum(a * sig(t - d) for sig, a, d in parts if t >= d)
        frames += struct.pack("<h", max(-32767, min(32767, int(round(x * 32767)))))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


def sine(hz: float) -> Callable[[float], float]:
    return lambda t: math.sin(2 * math.pi * hz * t)


def alternating(hz: Sequence[float], every_s: float) -> Callable[[float], float]:
    """The chair's test voice (tests/browser/media_fixtures.write_wav): tones taking turns every `every_s`."""
    return lambda t: math.sin(2 * math.pi * hz[int(t / every_s) % len(hz)] * t)
