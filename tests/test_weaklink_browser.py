"""Issue 13's real-Chromium part: the end hall's page plays audio over profile C with no underrun > 200 ms.

Three real nodes in namespaces (tests/weaklink_live.py): HQ -> relay hall (clean) -> end hall, relay~end
on the packet forwarder with profile C (80±30 ms, 3 % loss, 1 Mbit/s, queue 500 ms). Two headless
Chromiums, each started inside a node's namespace (`ip netns exec` in a tiny wrapper given to
Playwright as the executable; Playwright talks to it over pipes) so that http://localhost:8080 is
that node's own web server (a secure context): the presenter page at HQ with the fake camera and
microphone (a continuous two-tone wav), the hall page at the end hall.

What is heard is measured at the hall page's output: an init script taps whatever the page connects
to its AudioContext's destination with a small AudioWorklet (its samples also go on to a silent gain,
so nothing changes what is played) that counts the longest run of silent samples once sound began.
The source is a continuous tone, so a silent run is audio the hall did not play: an underrun (or a
gap concealed into silence). Over ~20 s of audio: no silent run longer than 200 ms (the issue's
bound), and the relay's link to the end hall on datagrams. The control: after that, every packet
into the end hall is dropped for 1.5 s, and the same tap must report a silent run > 200 ms.
Measured 2026-12-06: 0 underruns, longest silence 0.1 ms on datagrams; with MESHMEET_NO_DATAGRAMS=1
(the TCP link) 2 underruns, 344 ms, the jitter buffer at its 300 ms maximum: the test fails there.
Measured 2026-12-07 on a loaded machine: audio decoded up to 330-530 ms later than its least late
frame (`late_ms`), silent runs of 300-700 ms while the player refilled its whole target after each
underrun; with the restart after 40 ms of audio (test_media_playout_js.py), <= 101 ms in 4 runs.
CI (2026-12-07) still failed it twice (silences of 290-501 ms, 12-13 underruns). The per-chunk stages
(`stages_ms`, printed with every run) found where: audio waited in the hall's decoder worker up to
654 ms from arrival to decoded (p95 360 ms) on a quiet machine, because the worker redrew the same
640x360 picture on every audio-clock tick (~94 a second). Drawing only a new picture: p95 2-45 ms,
0 underruns in 2 runs, jitter target 129-141 ms instead of 300.
Needs root and Chromium (skips otherwise).
"""

from __future__ import annotations

import stat
import time

import pytest

from browser.media_fixtures import CHROMIUM, chromium_args, poll
from browser.media_fixtures import capture_files  # noqa: F401 - a pytest fixture
from weaklink_live import GUARD_S, in_netns, relay_link, run_name, settle_on_datagrams, weak_bed, why_not

WHY_NOT = why_not()
# real Chromium and real nodes on 2 shared cores: a stall of the presenter's own capture can starve it
pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=1),
              pytest.mark.skipif(WHY_NOT is not None, reason=f"packet testbed unavailable (needs root): {WHY_NOT}")]

PAGE = "http://localhost:8080"
AUDIO_S = 20.0
MAX_SILENT_MS = 200.0       # the bound for an underrun
CUT_S = 1.5                 # the control: a cut this long must show as silence
SILENT_LEVEL = 1e-3         # |sample| below this is silence (the tone's peak is ~0.37; a zero crossing is 1 sample)
STATS = "window.meshmeet.stats()"
DETAILS = "window.meshmeet.details()"
TAP = "window.__mmTap"

# The output tap: an AudioWorklet (a Blob URL module) on every node the page connects to its destination.
TAP_SCRIPT = """
(() => {
  const code = `
    class MmTap extends AudioWorkletProcessor {
      constructor() { super(); this.reset(); this.q = 0;
        this.port.onmessage = (e) => { if (e.data === "reset") this.reset(); }; }
      reset() { this.heard = false; this.run = 0; this.longest = 0; this.samples = 0; this.silentRuns = []; }
      process(inputs) {
        const x = inputs[0] && inputs[0][0];
        if (x) for (let i = 0; i < x.length; i++) {
          if (Math.abs(x[i]) > ${SILENT_LEVEL}) {
            if (this.run > this.longest) this.longest = this.run;
            if (this.heard && this.run >= sampleRate / 20) this.silentRuns.push(Math.round(this.run / sampleRate * 1000));
            this.heard = true; this.run = 0;
          } else if (this.heard) this.run++;
          if (this.heard) this.samples++;
        }
        if (++this.q % 20 === 0) this.port.postMessage({ heardMs: this.samples / sampleRate * 1000,
          longestSilentMs: Math.max(this.longest, this.run) / sampleRate * 1000, silentRunsMs: this.silentRuns.slice(-50),
          silentNowMs: this.run / sampleRate * 1000 });
        return true;
      }
    }
    registerProcessor("mm-test-tap", MmTap);`;
  const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
  const connect = AudioNode.prototype.connect;
  window.__mmTap = null;
  AudioNode.prototype.connect = function (dest, ...rest) {
    const out = connect.call(this, dest, ...rest);
    if (dest instanceof AudioDestinationNode && !this.__mmTapped) {
      this.__mmTapped = true;
      const src = this, ctx = this.context;
      ctx.audioWorklet.addModule(url).then(() => {
        const tap = new AudioWorkletNode(ctx, "mm-test-tap", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
        const mute = ctx.createGain(); mute.gain.value = 0;
        connect.call(src, tap); connect.call(tap, mute); connect.call(mute, ctx.destination);
        tap.port.onmessage = (e) => { window.__mmTap = e.data; };
        window.__mmTapReset = () => { window.__mmTap = null; tap.port.postMessage("reset"); };
      });
    }
    return out;
  };
})();
""".replace("${SILENT_LEVEL}", repr(SILENT_LEVEL))


def wrapper(tmp_path, netns_name: str) -> str:
    """A Chromium 'executable' that runs the real one inside `netns_name`."""
    path = tmp_path / f"chromium-{netns_name}"
    path.write_text(f'#!/bin/sh\nexec ip netns exec {netns_name} {CHROMIUM} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def pct(values: list[float]) -> dict:
    """p50, p95 and max of `values` (ms, rounded); {} when empty."""
    v = sorted(values)
    return {"p50": round(v[len(v) // 2]), "p95": round(v[int(len(v) * 0.95)]), "max": round(v[-1])} if v else {}


def audio_stages(pres, hall) -> dict:
    """Where voice 0's audio spent its time, per chunk (diagnostics, ms, all on this machine's clock):
    `source_lag` how far the presenter's encoder input fell behind the capture clock (above its least,
    a starved presenter's own lag: audio that did not exist yet cannot be played), `source_stall` the
    longest the encoder went without input beyond the audio due in that time, `net_above_median` encoder
    input to the hall's decoder worker, p95 and max above its median (presenter's WebSocket, nodes, the
    link; two browsers' epochs disagree by seconds here, so only its spread means anything), `decode` arrival to decoded."""
    captured = pres.evaluate("window.meshmeetPresenter.takeCaptures()")
    probe = hall.evaluate("window.meshmeet.probe()")
    fed = dict(captured)
    arrived = dict(probe.get("arrived", []))
    lag = [at - ts / 1000 for ts, at in captured]
    stalls = [(b[1] - a[1]) - (b[0] - a[0]) / 1000 for a, b in zip(captured, captured[1:])]
    net = [arrived[ts] - at for ts, at in fed.items() if ts in arrived]
    decoded = [(ts, at) for track, ts, at in probe["decoded"] if track == 0]
    arrivals = sorted(arrived.items())
    to_decode = []
    for ts, at in decoded:  # an output's timestamp is its chunk's less Opus's pre-skip (6.5 ms)
        match = next((a for t, a in arrivals if 0 <= t - ts < 10000), None)
        if match is not None:
            to_decode.append(at - match)
    return {"source_lag": pct([x - min(lag) for x in lag]) if lag else {},
            "source_stall_ms": round(max(stalls, default=0)),
            "net_above_median": {k: v - pct(net)["p50"] for k, v in pct(net).items() if k != "p50"} if net else {},
            "decode": pct(to_decode)}


def test_hall_page_plays_audio_over_profile_c_without_long_underruns(capture_files, tmp_path):
    from playwright.sync_api import sync_playwright

    y4m, wav = capture_files
    with weak_bed(tmp_path / "bed", run_name("wlb"), "C") as bed, sync_playwright() as p:
        settle_on_datagrams(bed)
        args = chromium_args(y4m, wav)
        at_hq = p.chromium.launch(executable_path=wrapper(tmp_path, bed.plan.host("hq").netns), headless=True, args=args)
        at_end = p.chromium.launch(executable_path=wrapper(tmp_path, bed.plan.host("end").netns), headless=True, args=args)
        try:
            pres = at_hq.new_context().new_page()
            pres.goto(PAGE + "/present?probe=1")  # probe: when each audio frame reached the encoder
            pres.click("#start")
            assert poll(pres, "window.meshmeetPresenter.stats().running", bool)
            hall_ctx = at_end.new_context()
            hall_ctx.add_init_script(TAP_SCRIPT)
            hall = hall_ctx.new_page()
            hall.goto(PAGE + "/media/hall?probe=1")  # probe: when each audio frame was decoded
            s = poll(hall, STATS, lambda s: s["audioFramesDecoded"] > 100, timeout_s=GUARD_S)
            assert s["audioFramesDecoded"] > 100, f"the hall page decoded no audio: {s}"
            assert poll(hall, TAP, lambda t: t is not None and t["heardMs"] > 1000), "the output tap heard nothing"

            hall.evaluate("window.__mmTapReset()")  # from here on: ~20 s of what the hall plays
            hall.evaluate("window.meshmeet.probe()")
            pres.evaluate("window.meshmeetPresenter.takeCaptures()")
            d0 = hall.evaluate(DETAILS)
            tap = poll(hall, TAP, lambda t: t is not None and t["heardMs"] >= AUDIO_S * 1000, timeout_s=AUDIO_S + GUARD_S,
                       every_s=0.5)
            d1 = hall.evaluate(DETAILS)
            link = relay_link(bed) or {}
            played = {"tap": tap, "underruns": d1["audioUnderruns"] - d0["audioUnderruns"],
                      "decoded": d1["audioFramesDecoded"] - d0["audioFramesDecoded"],
                      "seq_missing": d1.get("audioSeqMissing", 0) - d0.get("audioSeqMissing", 0),
                      "concealed_ms": d1.get("concealedMs", 0) - d0.get("concealedMs", 0),
                      "target_ms": d1.get("targetMs"), "mode": d1["mode"],
                      "relay_link": {k: link.get(k) for k in ("transport", "layer", "loss", "rtt_ms", "audio_late_dropped")},
                      "stages_ms": audio_stages(pres, hall)}
            print("profile C, hall page:", played)
            assert tap is not None and tap["heardMs"] >= AUDIO_S * 1000, f"the hall played < {AUDIO_S:g} s: {played}"
            assert tap["longestSilentMs"] <= MAX_SILENT_MS, \
                f"the hall page went silent for {tap['longestSilentMs']:.0f} ms (> {MAX_SILENT_MS:g}): {played}"
            # a young link at audio-only asks for 40 ms frames until it climbs (then 20 ms again): at least
            # 25 frames a second, and the decoded audio's own clock advanced with the time played
            assert played["decoded"] >= 0.9 * AUDIO_S * 25, f"the hall decoded too few frames: {played}"
            assert d1["audioTsUs"] - d0["audioTsUs"] >= 0.9 * AUDIO_S * 1e6, f"decoded audio covers too little time: {played}"
            assert link.get("transport") == "datagram", f"the relay's link to the end hall: {played['relay_link']}"

            # the control: the same tap hears a cut (every packet into the end hall dropped for CUT_S)
            hall.evaluate("window.__mmTapReset()")
            poll(hall, TAP, lambda t: t is not None and t["heardMs"] > 1000)
            rule = ["INPUT", "-j", "DROP"]
            in_netns(bed, "end", "iptables", "-I", *rule)
            try:
                time.sleep(CUT_S)
            finally:
                in_netns(bed, "end", "iptables", "-D", *rule)
            cut = poll(hall, TAP, lambda t: t is not None and t["silentNowMs"] == 0 and t["longestSilentMs"] > MAX_SILENT_MS,
                       timeout_s=GUARD_S)
            print("profile C, hall page, after a cut of", CUT_S, "s:", cut)
            assert cut["longestSilentMs"] > MAX_SILENT_MS, f"the tap did not hear a {CUT_S} s cut: {cut}"
        finally:
            at_hq.close()
            at_end.close()
