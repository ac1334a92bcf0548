#!/usr/bin/env python3
"""Weak-link adaptation benchmark: audio on the issue-13 profiles over an emulated datagram path.

The relay core (meshmeet/media/relay.py) feeds one datagram tree link; the path
(tests/media_dgram_sim.py) has a drop-tail bottleneck, a base delay with jitter and random loss,
and the receiver reports every 250 ms. Per profile, in the same run and with the same seed:
  feedback   reports go to `relay.link_feedback` (estimate, pacing, flush, audio plan, redundancy)
  baseline   the same datagram path without reports: the relay only sees its own queue, which a
             datagram socket never fills (what a UDP transport without adaptation would do)
Figures: share of audio heard within the profile's budget above the base delay, share delivered
at all, p95 delay above the base (lost = infinite), and feedback / baseline ratios. Deterministic
(no clock): the figures depend on the code only.

    python scripts/bench/adapt.py [--json] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from media_dgram_sim import DGRAM_FRAMING_BYTES, Path as DgramPath, SourceF, audio_delays, run, share_within  # noqa: E402

from meshmeet.media.ladder import AUDIO_LEVEL  # noqa: E402
from meshmeet.media.relay import MediaRelay  # noqa: E402

# name, rate bit/s, base s, jitter s, loss, queue s, budget s, cap at s (0: from the start), start level
PROFILES = [
    ("C 80±30 ms 3% 1 Mbit/s", 1e6, 0.08, 0.03, 0.03, 0.5, 0.150, 0.0, 0),
    ("D 150±50 ms 5% 256 kbit/s", 256e3, 0.15, 0.05, 0.05, 0.5, 0.300, 0.0, 0),
    ("E 100 ms 32 kbit/s 1.5 s queue, capped at 5 s", 32e3, 0.1, 0.0, 0.0, 1.5, 0.400, 5.0, 0),
    ("E from the start, link added at audio-only", 32e3, 0.1, 0.0, 0.0, 1.5, 0.400, 0.0, AUDIO_LEVEL),
]


def one(profile: tuple, seconds: float, feedback: bool) -> dict:
    name, rate, base, jitter, loss, queue, budget, cap_at, start_level = profile
    relay, src = MediaRelay(source="src"), SourceF()
    for m in src.configs():
        relay.receive("src", m, 0.0)
    relay.add_link("d", 0.0, simulcast=True, start_level=start_level)
    relay.set_link_framing("d", DGRAM_FRAMING_BYTES)
    src.force_key.update({0, 1})
    path = DgramPath(100e6 if cap_at else rate, base, jitter, loss, queue)
    if not feedback:
        relay.link_feedback = lambda *a, **k: None  # type: ignore[method-assign]
    levels: list[str] = []

    def step(t: float) -> None:
        if round(t * 1000) % 100 == 0 and t >= cap_at:
            levels.append(relay.link_stats("d", t).layer)
    if cap_at:
        run(relay, src, "d", path, 0.0, cap_at, on_step=step)
        path.rate_bps = rate
    run(relay, src, "d", path, cap_at, cap_at + seconds, on_step=step)
    d = audio_delays(src, path, cap_at, cap_at + seconds - 1)
    xs = sorted(math.inf if x is None else x for _, x in d)
    p95 = xs[int(0.95 * len(xs))]
    return {"heard_in_budget": round(share_within(d, budget), 4),
            "delivered": round(sum(1 for _, x in d if x is not None) / len(d), 4),
            "p95_ms": None if math.isinf(p95) else round(p95 * 1000, 1),
            "video_share": round(sum(layer != "audio" for layer in levels) / max(1, len(levels)), 3),
            "late_dropped": relay.link_stats("d", cap_at + seconds).audio_late_dropped}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    rows = []
    for prof in PROFILES:
        fb, bl = one(prof, args.seconds, True), one(prof, args.seconds, False)
        ratio = {k: (round(fb[k] / bl[k], 2) if bl[k] else None) for k in ("heard_in_budget", "delivered")}
        rows.append({"profile": prof[0], "budget_ms": round(prof[6] * 1000), "feedback": fb, "baseline": bl,
                     "ratio": ratio})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'profile':46} {'budget':>6} | {'heard in budget':>22} | {'delivered':>20} | {'p95 ms':>15} | video share")
    print(f"{'':46} {'':>6} | {'fb / base (ratio)':>22} | {'fb / base (ratio)':>20} | {'fb / base':>15} |")
    for r in rows:
        fb, bl, ra = r["feedback"], r["baseline"], r["ratio"]
        p95 = f"{fb['p95_ms'] or 'inf'} / {bl['p95_ms'] or 'inf'}"
        print(f"{r['profile']:46} {r['budget_ms']:>6} | {fb['heard_in_budget']:.3f} / {bl['heard_in_budget']:.3f} ({ra['heard_in_budget']}) | "
              f"{fb['delivered']:.3f} / {bl['delivered']:.3f} ({ra['delivered']}) | {p95:>15} | "
              f"{fb['video_share']:.2f} / {bl['video_share']:.2f}")


if __name__ == "__main__":
    main()
