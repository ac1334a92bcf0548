"""Part (b) of scripts/bench/conference.py: two voices at once, mouth to ear, both directions; and echo.

Real `meshmeet run` nodes, real headless Chromium (Debian's, driven over a DevTools pipe by
scripts/bench/_cdp_pipe.py, not Playwright: see there). HQ -> relay hall -> end hall:
  loopback   the three nodes on 127.0.0.1 (tests/browser/node_chain.py)
  C          the testbed (tests/weaklink_live.py): relay~end on issue 13's profile C (80±30 ms, 3 %
             loss, 1 Mbit/s); each Chromium runs inside its node's namespace (needs root; run the
             whole bench under `flock /tmp/meshmeet-netns.lock`, as every netns bench)
Three Chromiums: the chair's (at HQ: /present?probe=1 with a fake microphone playing 440/880 Hz, and
a player page /media/hall?probe=1), the hall's (at the end hall: /media/hall?speak=1&probe=1 with a
fake microphone playing the hall's 1,500 Hz tone plus the chair's tones at -6 dB, delayed 50 ms: the
"echo" its loudspeaker would put back into its microphone) and a listener's (at the end hall: a
player page, the hall's own node's baseline). The chair gives the floor to the end hall.

Mouth to ear (scripts/bench/voice_latency.py): from when a 20 ms capture frame reached the sender's
encoder (present.js takeFed(), hall-voice.js voiceProbe()) to when the receiver's playout worklet
played that timestamp, mapped to the epoch by AudioContext.getOutputTimestamp() (so it includes the
playout buffer and the output latency). All browsers share this machine's clock.
  hq_to_hall   the chair's voice (voice 1) at the hall page that speaks
  hall_to_hq   the hall's voice (voice 0) at the player page at HQ
Baseline, same run, same browsers and pipeline, no mesh hop: the chair's voice at the player page at
HQ (chair_local) and the hall's voice at the listener page at the end hall (hall_local); their
difference to the directions above is what the mesh adds. Also the chair's bare in-page loop
(present.js takeLoop(): encoder input to decoded in the same page, no node, no playout buffer).
Goals (issue 15): p95 <= 150 ms each direction on loopback, <= 400 ms on profile C.

Echo (issue 15 item 1): headless Chromium cannot hear its own loudspeaker, so the echo is in the
hall's microphone file; it is not aligned with what the page plays (the fake device starts the file
at its own time). Measured at HQ in the hall's voice (Hann-windowed Goertzel per decoded frame): the
chair's tones ("echo"), the hall's tone ("own"), 660 Hz where nothing plays ("floor"), first with the
chair silent (nothing played at the hall: no reference for the echo canceller, no ducking), then
with the chair speaking (the canceller has the played chair as reference; the page ducks its
microphone by 14 dB while it plays others). In the file, echo - own = -6.0 dB.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import voice_latency as VL  # noqa: E402

GOAL_LOOPBACK_P95_MS = 150.0
GOAL_C_P95_MS = 400.0
HALL_HZ = 1500                  # far from the chair's 440/880 Hz: the Hann window's leakage stays < -60 dB
OWN_AMPLITUDE = 0.25
ECHO_AMPLITUDE = 0.125          # -6 dB under the hall's own voice
ECHO_DELAY_S = 0.05
LEVEL_HZ = (440, 880, HALL_HZ, 660)
GROUPS = {"echo": (440, 880), "own": (HALL_HZ,), "floor": (660,)}
SETTLE_S = 3.0                  # after a voice starts: jitter buffers settle before anything is judged
PLAY_OUT_S = 2.0                # after a window: its last frames are played before the reports are read
GUARD_S = 120.0                 # hang guards only
# every page plays or speaks at once: none may be throttled as a background tab
AWAKE = ("--disable-renderer-backgrounding", "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows")


def _log(what: str) -> None:
    print(f"[voices {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def _eval(page, expr: str, what: str = ""):
    return page.evaluate(expr)


def _poll(page, expr: str, pred, what: str, guard_s: float = GUARD_S):
    _log(f"waiting: {what}")
    end = time.monotonic() + guard_s
    said = time.monotonic()
    while True:
        a = time.monotonic()
        v = _eval(page, expr, what)
        if time.monotonic() - a > 2:
            _log(f"  slow evaluate ({time.monotonic() - a:.1f} s): {what}")
        if pred(v):
            return v
        if time.monotonic() - said > 10:
            _log(f"  still waiting: {what}: {str(v)[:200]}")
            said = time.monotonic()
        if time.monotonic() > end:
            raise RuntimeError(f"never happened within {guard_s:g} s: {what} (last: {v})")
        time.sleep(0.1)


def _voice_decoded(page, voice: int, frames: int, what: str) -> None:
    _poll(page, "window.meshmeet.details().voices", lambda v: bool(v) and v.get(str(voice), {}).get("decoded", 0) >= frames, what)


def _rendered(probe: dict, voice: int) -> list[tuple[float, float]]:
    return [(ts, at) for v, ts, at in probe["rendered"] if v == voice]


def _session(pages: dict, hq_url: str, end_url: str, grant, seconds: float, echo_seconds: float) -> dict:
    """One run: pages = {"chair", "hall", "listener"} browser launchers; returns the figures."""
    chair_browser, hall_browser, listener_browser = pages["chair"](), pages["hall"](), pages["listener"]()
    grant()
    hall = hall_browser.new_page(end_url + "/media/hall?speak=1&probe=1")
    _poll(hall, "window.meshmeet.voice()", lambda v: v["sending"] and v["chunksSent"] > 20, "the hall page sends its voice")
    listener = listener_browser.new_page(end_url + "/media/hall?probe=1")
    at_hq = chair_browser.new_page(hq_url + "/media/hall?probe=1")
    _eval(at_hq, f"window.meshmeet.probeLevels({list(LEVEL_HZ)})")
    _voice_decoded(at_hq, 0, 50, "HQ hears the hall")
    time.sleep(SETTLE_S)
    _eval(at_hq, "window.meshmeet.probe()")
    v0 = _eval(hall, "window.meshmeet.voice()")
    _log("echo window, chair silent")
    time.sleep(echo_seconds)  # echo, chair silent: the hall page plays nothing
    silent = VL.tone_levels(_eval(at_hq, "window.meshmeet.probe()")["levels"], 0, LEVEL_HZ, GROUPS)
    v1 = _eval(hall, "window.meshmeet.voice()")
    silent["ducked_frames"] = v1["ducked"] - v0["ducked"]

    _log("the chair starts speaking")
    pres = chair_browser.new_page(hq_url + "/present?probe=1")
    _eval(pres, "document.querySelector('#start').click(), true")
    _poll(pres, "window.meshmeetPresenter.stats().running", bool, "the chair's presenter runs")
    _voice_decoded(hall, 1, 50, "the hall hears the chair")
    _voice_decoded(at_hq, 1, 50, "HQ's player hears the chair")
    _voice_decoded(listener, 0, 50, "the end hall's listener hears the hall")
    _log("both voices flow: settling")
    time.sleep(SETTLE_S)
    for p in (hall, at_hq, listener):
        _eval(p, "window.meshmeet.probe()")
    _eval(pres, "window.meshmeetPresenter.takeFed().length, window.meshmeetPresenter.takeLoop().length")
    _eval(hall, "window.meshmeet.voiceProbe()")
    v0 = _eval(hall, "window.meshmeet.voice()")
    _log("measured window")
    t0 = time.time()
    time.sleep(seconds)
    chair_fed = _eval(pres, "window.meshmeetPresenter.takeFed()")
    hall_fed = [(ts, at) for ts, _rms, at in _eval(hall, "window.meshmeet.voiceProbe()")]
    loop = _eval(pres, "window.meshmeetPresenter.takeLoop()")
    v1 = _eval(hall, "window.meshmeet.voice()")
    window_s = time.time() - t0
    _log("window over: its last frames play out")
    time.sleep(PLAY_OUT_S)
    got = {name: _eval(p, "window.meshmeet.probe()") for name, p in (("hall", hall), ("hq", at_hq), ("listener", listener))}
    mapping = {name: _eval(p, "window.meshmeet.clockMapping()") for name, p in (("hall", hall), ("hq", at_hq), ("listener", listener))}
    out: dict = {"window_s": round(window_s, 1)}
    # the receivers' playout (voice 0's figures: the hall's voice at HQ and at the end hall's listener)
    out["playout_voice0"] = {name: {k: d.get(k) for k in ("targetMs", "bufferedMs", "jitterMs", "audioUnderruns")}
                             for name, d in (("hq", _eval(at_hq, "window.meshmeet.details()")),
                                             ("listener", _eval(listener, "window.meshmeet.details()")))}
    for key, fed, probe, voice in (("hq_to_hall", chair_fed, got["hall"], 1), ("hall_to_hq", hall_fed, got["hq"], 0),
                                   ("chair_local", chair_fed, got["hq"], 1), ("hall_local", hall_fed, got["listener"], 0)):
        lat, unplayed = VL.mouth_to_ear(fed, _rendered(probe, voice))
        out[key] = {**VL.summary(lat, unplayed), "p50_by_quarter_ms": VL.median_by_part(lat)}
    out["loop"] = VL.summary(loop)
    speaking = VL.tone_levels(got["hq"]["levels"], 0, LEVEL_HZ, GROUPS)
    speaking["ducked_frames"] = v1["ducked"] - v0["ducked"]
    out["echo"] = {"chair_silent": silent, "chair_speaking": speaking, "echo_cancellation": v1["echoCancellation"],
                   "in_file_echo_minus_own_db": VL.db(ECHO_AMPLITUDE / OWN_AMPLITUDE)}
    for k in ("chair_silent", "chair_speaking"):
        e = out["echo"][k]
        e["echo_minus_own_db"] = None if e["echo"] is None or e["own"] is None else round(e["echo"] - e["own"], 1)
    out["clock_mapping"] = mapping
    out["gaps"] = {name: len(p["voiceGaps"]) for name, p in got.items()}
    for key, base in (("hq_to_hall", "chair_local"), ("hall_to_hq", "hall_local")):
        a, b = out[key]["p95_ms"], out[base]["p95_ms"]
        out[key]["p95_vs_" + base] = None if not a or not b else round(a / b, 2)
        out[key]["p95_added_ms"] = None if a is None or b is None else round(a - b, 1)
    return out


def _capture_files(tmp: Path) -> tuple[Path, Path, Path]:
    from browser.media_fixtures import FPS, HEIGHT, TONE_S, TONES_HZ, WIDTH, write_wav

    y4m, chair, hall = tmp / "cam.y4m", tmp / "chair.wav", tmp / "hall.wav"
    # a flat grey camera: the chair's video is not relayed while a hall holds the floor, and a flat
    # picture costs the presenter's two VP8 encoders next to nothing on this shared machine
    frame = b"FRAME\n" + bytes([60]) * (WIDTH * HEIGHT) + bytes([128]) * (WIDTH * HEIGHT // 2)
    y4m.write_bytes(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode() + frame * FPS)
    write_wav(chair, 10.0)
    VL.write_mix_wav(hall, [(VL.sine(HALL_HZ), OWN_AMPLITUDE, 0.0),
                            (VL.alternating(TONES_HZ, TONE_S), ECHO_AMPLITUDE, ECHO_DELAY_S)])
    return y4m, chair, hall


def _launcher(stack: ExitStack, netns_name: str | None, args: list[str]):
    """Chromium driven over a DevTools pipe (scripts/bench/_cdp_pipe.py: Playwright's client falls
    behind these media pages' WebSocket frames on a loaded machine), inside a namespace if named."""
    from _cdp_pipe import Browser

    from browser.media_fixtures import CHROMIUM

    def launch():
        b = Browser(["ip", "netns", "exec", netns_name] if netns_name else [], CHROMIUM, [*args, *AWAKE])
        stack.callback(b.close)
        return b
    return launch


def _loopback(tmp: Path, files, seconds: float, echo_seconds: float) -> dict:
    from browser.media_fixtures import chromium_args
    from browser.node_chain import api_post, node_chain

    y4m, chair_wav, hall_wav = files
    local = lambda u: u.replace("127.0.0.1", "localhost")  # noqa: E731 - a secure context for WebCodecs
    with node_chain(tmp / "loopback") as (hq, relay, end), ExitStack() as stack:
        pages = {"chair": _launcher(stack, None, chromium_args(y4m, chair_wav)),
                 "hall": _launcher(stack, None, chromium_args(y4m, hall_wav)),
                 "listener": _launcher(stack, None, chromium_args(y4m, chair_wav))}
        out = _session(pages, local(hq.url), local(end.url),
                       lambda: api_post(hq, "floor", {"action": "grant", "site": end.node_id}), seconds, echo_seconds)
    out["goal_p95_ms"] = GOAL_LOOPBACK_P95_MS
    return out


def _profile_c(tmp: Path, files, seconds: float, echo_seconds: float) -> dict:
    from browser.media_fixtures import chromium_args
    from weaklink_live import node_id, relay_link, run_name, settle_on_datagrams, weak_bed, why_not

    reason = why_not()
    if reason is not None:
        return {"skipped": f"packet testbed unavailable (needs root): {reason}"}
    y4m, chair_wav, hall_wav = files
    page = "http://localhost:8080"
    with weak_bed(tmp / "bed", run_name("vbc"), "C") as bed, ExitStack() as stack:
        settle_on_datagrams(bed)
        at_hq, at_end = (bed.plan.host(n).netns for n in ("hq", "end"))
        pages = {"chair": _launcher(stack, at_hq, chromium_args(y4m, chair_wav)),
                 "hall": _launcher(stack, at_end, chromium_args(y4m, hall_wav)),
                 "listener": _launcher(stack, at_end, chromium_args(y4m, chair_wav))}
        out = _session(pages, page, page, lambda: bed.api("hq", "floor", {"action": "grant", "site": node_id(bed, "end")}),
                       seconds, echo_seconds)
        link = relay_link(bed) or {}
        out["relay_link"] = {k: link.get(k) for k in ("transport", "layer", "loss", "rtt_ms", "audio_late_dropped")}
    out["goal_p95_ms"] = GOAL_C_P95_MS
    return out


def voices(args) -> dict:
    seconds = float(getattr(args, "voices_seconds", 20.0))
    echo_seconds = float(getattr(args, "voices_echo_seconds", 8.0))
    where = [w for w in str(getattr(args, "voices_on", "loopback,C")).split(",") if w]
    out: dict = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
                 "seconds": seconds, "goals_p95_ms": {"loopback": GOAL_LOOPBACK_P95_MS, "C": GOAL_C_P95_MS}}
    with tempfile.TemporaryDirectory(prefix="voicebench-") as tmp:
        files = _capture_files(Path(tmp))
        if "loopback" in where:
            out["loopback"] = _loopback(Path(tmp), files, seconds, echo_seconds)
        if "C" in where:
            out["C"] = _profile_c(Path(tmp), files, seconds, echo_seconds)
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["goals_met"] = {w: (out[w]["hq_to_hall"]["p95_ms"] or 1e9) <= out[w]["goal_p95_ms"]
                        and (out[w]["hall_to_hq"]["p95_ms"] or 1e9) <= out[w]["goal_p95_ms"]
                        for w in ("loopback", "C") if w in out and "skipped" not in out[w]}
    return out


def voices_table(r: dict) -> str:
    lines = ["(b) two voices: mouth to ear (encoder input -> played at the receiver's output), ms",
             f"{'path':<10}{'direction':<13}{'frames':>7}{'p50':>8}{'p95':>8}{'max':>8}{'unplayed':>9}{'goal':>6}"]
    for w in ("loopback", "C"):
        x = r.get(w)
        if not x:
            continue
        if "skipped" in x:
            lines.append(f"{w:<10}skipped: {x['skipped']}")
            continue
        for key, label in (("hq_to_hall", "HQ->hall"), ("hall_to_hq", "hall->HQ"), ("chair_local", "base chair"),
                           ("hall_local", "base hall"), ("loop", "base loop")):
            s = x[key]
            goal = f"{x['goal_p95_ms']:g}" if key in ("hq_to_hall", "hall_to_hq") else ""
            lines.append(f"{w:<10}{label:<13}{s['frames']:>7}{s['p50_ms']!s:>8}{s['p95_ms']!s:>8}{s['max_ms']!s:>8}"
                         f"{s['unplayed']:>9}{goal:>6}")
        lines.append(f"{'':<10}mesh adds at p95: HQ->hall {x['hq_to_hall']['p95_added_ms']} ms "
                     f"(x{x['hq_to_hall']['p95_vs_chair_local']}), hall->HQ {x['hall_to_hq']['p95_added_ms']} ms "
                     f"(x{x['hall_to_hq']['p95_vs_hall_local']})")
        lines.append(f"{'':<10}playout of the hall's voice (target/buffered ms): " + ", ".join(
            f"{n} {p['targetMs']}/{p['bufferedMs']}" for n, p in x.get("playout_voice0", {}).items()))
        e = x["echo"]
        for k in ("chair_silent", "chair_speaking"):
            lines.append(f"{'':<10}echo at HQ, {k.replace('_', ' ')}: chair tones {e[k]['echo']} dBFS, hall tone "
                         f"{e[k]['own']} dBFS, floor {e[k]['floor']} dBFS, echo-own {e[k]['echo_minus_own_db']} dB "
                         f"(in the mic file {e['in_file_echo_minus_own_db']}), ducked frames {e[k]['ducked_frames']}")
    lines.append(f"load average {r['load_average_at_start']} -> {r['load_average_at_end']} on {r['cpus']} CPUs; "
                 f"goals met: {r['goals_met']}")
    return "\n".join(lines)
