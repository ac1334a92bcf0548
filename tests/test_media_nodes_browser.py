"""Issue 5 end to end: presenter page at HQ -> relay hall -> end hall's TV page, three real nodes.

Headless Chromium with deterministic capture files (barcoded y4m, alternating-tone wav). The
relay -> end link is throttled to 64 kbit/s for 10 s of audio with the node's own test-only rate
cap (MESHMEET_TEST_HOOKS=1, applied in the relay core's link model); then to 32 kbit/s, where the
audio itself does not fit (24 kbit/s Opus + 14 B headers + 20 B of mesh link framing per 20 ms frame
= 37.6 kbit/s) and the relay asks the presenter for a lower Opus bitrate. Bounds the issue states in
seconds are counted in media time (the capture timestamps of decoded audio, the source's clock),
never the test machine's wall clock.

Audio is judged on what meshmeet controls: every audio chunk the presenter sent reaches the end
hall's decoder (sequence numbers contiguous, capture timestamps 20 ms apart), and each decoded
frame has the tone the presenter fed its encoder at that timestamp. It is not judged on tone runs
being exactly 25 frames: Chromium's fake audio capture device garbles 1-2 frames where it loops the
wav (every 10 s) and now and then under load (measured: the presenter's own input shows the same
split runs, e.g. 8 + 2 + 15, and the hall matched it frame for frame with no sequence gap).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser.media_fixtures import (AUDIO_FRAME_US, CHROMIUM, FPS, chromium_args, in_order, poll, tone_runs,
                                    audio_steps, audio_vs_capture)
from browser.media_fixtures import capture_files  # noqa: F401 - a pytest fixture
from browser.node_chain import api_post, media, node_chain
from meshmeet.media.audio_rate import AUDIO_RATE_EXPIRE_S, AUDIO_RATE_HOLD_S, AUDIO_RATE_REFRESH_S

# The goals, in media time: audio-only within 1 s of the cap, video back within 5 s of the lift.
# Measured on the source's media clock (the timestamp of the presenter's latest audio chunk) from just
# before the cap to just after the hall page shows the change; that over-counts by the poll and the
# page's 100 ms stats interval. Not on the hall's clock (its latest decoded audio): right after the
# late joiner its audio lagged the source by 0.25-0.75 s (86 ms in steady flow) and that backlog
# arrived in a burst after the cap, so the hall's clock advanced 0.66-1.48 s while the source's
# advanced 0.56-0.62 s. Measured on the source's clock, 9 runs at load 2.5-4.6: 0.44-0.80 s, so the
# bound is the goal itself. Video came back after 0.2-3.0 s of the source's media.
AUDIO_ONLY_WITHIN_US = 1_000_000
VIDEO_BACK_WITHIN_US = 5_000_000
THROTTLED_US = 10_000_000  # how long the cap holds, in media time
CAUGHT_UP_LAG_US = 250_000  # hall's audio behind the source: 50-110 ms in steady flow, + 100 ms stats interval

# Real Chromium and real nodes on 2 shared cores: a scheduling stall can starve the encoders for a
# moment, so a failure is retried (twice at most); every assertion still has to pass in one run.
pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=2)]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
# Playout underruns from the cap to the end: 0 in 8 of 9 measured runs, 1 in one (load ~4); the
# player's sequence numbers showed no lost chunk in any of them (asserted below), so an underrun is
# the headless page starved of CPU on this shared 2-core machine, not audio missing.
UNDERRUNS_TOLERATED = 1
LATE_DROPPED_TOLERATED = 10  # audio chunks (2 % of the 32 kbit/s phase) the relay may drop as late
# The 32 kbit/s phase: the presenter runs at <= 16 kbit/s within this much of its own media after the
# cap (audio-only comes 0.44-0.80 s after a cap, and the request leaves with that decision); after the
# lift it is back at its preset within the video's bound + the requests' soft state (refresh, expiry at
# each of the two hops upstream of the link, the presenter's hold).
AUDIO_RATE_WITHIN_US = 1_500_000
AUDIO_RATE_BACK_WITHIN_US = VIDEO_BACK_WITHIN_US + int(1e6 * (AUDIO_RATE_REFRESH_S + AUDIO_RATE_EXPIRE_S + AUDIO_RATE_HOLD_S))
PRESENTER = "window.meshmeetPresenter.stats()"
STATS = "window.meshmeet.stats()"
STEADY_WINDOWS = 3
DETAILS = "window.meshmeet.details()"
SOURCE_CLOCK = "window.meshmeetPresenter.stats().audioTsUs"


def layers(*nodes) -> list:
    """Compact diagnostics for a failure message: each node's link and browser levels."""
    out = []
    for n in nodes:
        m = media(n)
        out.append([(x["layer"], x["queue_ms"], x["estimate_kbps"]) for x in m["links"] + m["browsers"]])
    return out


def local(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")  # a secure context for WebCodecs


def test_three_nodes_presenter_to_end_hall(capture_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("MESHMEET_TEST_HOOKS", "1")
    y4m, wav = capture_files
    with node_chain(tmp_path) as (hq, relay, end), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(y4m, wav))
        try:
            ctx = browser.new_context()
            pres = ctx.new_page()
            pres.goto(local(hq.url) + "/present?probe=1")  # probe: the tones it feeds its encoder
            pres.click("#start")
            assert poll(pres, "window.meshmeetPresenter.stats().running", bool)
            hall = ctx.new_page()
            console_errors: list[str] = []  # shown when the decoders count an error
            hall.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
            hall.goto(local(end.url) + "/media/hall?probe=1")

            # -- steady flow through two relays: barcodes in order at >= 90 % of the source rate,
            #    every audio frame the presenter encoded decoded in order with its tone, no errors
            poll(hall, STATS, lambda s: s["videoFramesDecoded"] > 20)
            # steady state first: on a loaded machine a stalled page at start can make its node shed to
            # audio-only and ask the source for longer frames, a request that expires some 10 s later
            enc = poll(pres, "window.meshmeetPresenter.stats().audioFrameMs", lambda ms: ms == 20)
            assert enc == 20, f"the presenter still encodes {enc} ms audio frames: {layers(hq, relay, end)}"
            poll(hall, STATS, lambda s: s["mode"] == "video")
            # the first 4 s window without a lost chunk is judged, of STEADY_WINDOWS: a loaded machine can
            # stall a node past the 250 ms audio budget, and the relay then drops that audio (as it must)
            captured: list = []  # every tone the presenter encoded (a window's frames may be captured before it)
            windows = []
            for _ in range(STEADY_WINDOWS):
                hall.evaluate("window.meshmeet.probe()")  # discard what came before
                d0 = hall.evaluate(DETAILS)
                a0 = hall.evaluate(STATS)
                poll(hall, STATS, lambda s: s["audioFramesDecoded"] - a0["audioFramesDecoded"] >= 200)  # 4 s of audio
                a1 = hall.evaluate(STATS)
                probe = hall.evaluate("window.meshmeet.probe()")
                captured += pres.evaluate("window.meshmeetPresenter.takeTones()")
                lost = d0["audioSeqMissing"] != hall.evaluate(DETAILS)["audioSeqMissing"]
                windows.append({"gaps": probe["audioGaps"], "lost": lost, "layers": layers(hq, relay, end)})
                if not probe["audioGaps"] and not lost:
                    break
            steps = audio_steps(probe["decoded"])
            # the player's timestamps come from 14-byte headers in 100 µs duration units: +-1 µs rounding
            assert len(steps) >= 199 and all(abs(st - AUDIO_FRAME_US) <= 1 for st in steps), \
                [st for st in steps if abs(st - AUDIO_FRAME_US) > 1]
            assert probe["audioGaps"] == [], windows  # sequence numbers: no chunk lost on the way
            span_us = sum(steps)
            video_ts = [t for track, t, _ in probe["decoded"] if track == 1]
            video_rate = len(video_ts) / (span_us / 1e6)
            assert video_rate >= 0.9 * FPS, (video_rate, a0, a1, layers(hq, relay, end))
            assert in_order(probe["barcodes"]), probe["barcodes"]
            cmp = audio_vs_capture(probe["decoded"], probe["tones"], captured)
            runs = tone_runs(probe["tones"])
            why = (cmp, runs, tone_runs([hz for _, hz in captured]))
            # every decoded frame was captured; at least 80 % of them are clean tones (8 of 200 straddle a
            # change, a capture glitch costs 1-2), and none of those decoded as the other tone
            assert cmp["unmatched"] == 0 and cmp["clean"] >= 0.8 * cmp["matched"] and not cmp["mismatched"], why
            assert len(runs) >= 8, why  # the tones really alternate (4 s: 8 changes)
            print(f"steady: {len(steps) + 1} audio frames, {cmp['clean']} clean tones matched, "
                  f"video {video_rate:.1f} fps, underruns {a0['audioUnderruns']} -> {a1['audioUnderruns']}")
            assert a1["mode"] == "video"
            details = hall.evaluate(DETAILS)
            assert details["decoderErrors"] == 0 and details["formatErrors"] == 0, (details, console_errors)
            assert not windows[-1]["lost"], (details, windows)
            m = media(end)
            assert m["source"] == hq.node_id and m["source_link"] == relay.node_id and m["subscribers"] >= 1
            ARTIFACTS.mkdir(exist_ok=True)
            hall.screenshot(path=str(ARTIFACTS / "nodes-hall-video.png"))

            # -- a late joiner at the end hall: its keyframe request travels two hops to the presenter
            kf0 = pres.evaluate("window.meshmeetPresenter.stats().keyframesOnRequest")
            late = ctx.new_page()
            late.goto(local(end.url) + "/media/hall")
            poll(late, "window.meshmeet.details().connected", bool, every_s=0.01)
            frames0 = pres.evaluate("window.meshmeetPresenter.stats().videoFrames[0]")
            poll(late, STATS, lambda s: s["videoFramesDecoded"] > 0)
            frames1 = pres.evaluate("window.meshmeetPresenter.stats().videoFrames[0]")
            assert pres.evaluate("window.meshmeetPresenter.stats().keyframesOnRequest") > kf0
            assert frames1 - frames0 < 20, (frames0, frames1)  # < 1 s of capture; periodic keys are 2 s apart
            late.close()

            # -- throttle relay -> end to 64 kbit/s for 10 s of audio, once the hall has caught up: right
            #    after the late joiner its audio lagged the source by up to 1 s (50-110 ms in steady flow),
            #    and a hall stalled that long flips to audio-only by itself, which is not the shed under test
            d = poll(hall, DETAILS, lambda d: pres.evaluate(SOURCE_CLOCK) - d["audioTsUs"] <= CAUGHT_UP_LAG_US)
            assert pres.evaluate(SOURCE_CLOCK) - d["audioTsUs"] <= CAUGHT_UP_LAG_US, d
            before = hall.evaluate(DETAILS)
            assert before["mode"] == "video"
            src0 = pres.evaluate(SOURCE_CLOCK)
            api_post(relay, "media_test_rate_cap", {"peer": end.node_id, "bps": 64_000})
            s = poll(hall, DETAILS, lambda s: s["mode"] == "audio-only")
            shed_us = pres.evaluate(SOURCE_CLOCK) - src0
            assert s["mode"] == "audio-only"
            print(f"audio-only after {shed_us / 1000:.0f} ms of the source's media; hall lagged the source by "
                  f"{(src0 - before['audioTsUs']) / 1000:.0f} ms at the cap, its own clock advanced "
                  f"{(s['modeSinceAudioTsUs'] - before['audioTsUs']) / 1000:.0f} ms to the flip")
            assert shed_us <= AUDIO_ONLY_WITHIN_US, (shed_us, before, s)
            links = {link["peer"]: link for link in media(relay)["links"]}
            assert links[end.node_id]["layer"] == "audio" and links[hq.node_id]["layer"] != "audio"
            hall.screenshot(path=str(ARTIFACTS / "nodes-hall-audio-only.png"))
            assert "Chỉ âm thanh" in hall.text_content("#audioonly") and hall.is_visible("#audioonly")
            during = poll(hall, DETAILS, lambda x: x["audioTsUs"] - before["audioTsUs"] >= THROTTLED_US)
            assert during["audioTsUs"] - before["audioTsUs"] >= THROTTLED_US
            assert during["audioSeqMissing"] == 0, during  # audio kept flowing: not one chunk lost
            print(f"underruns: {before['audioUnderruns']} before the cap, {during['audioUnderruns']} after 10 s of it")
            assert during["audioUnderruns"] - before["audioUnderruns"] <= UNDERRUNS_TOLERATED, (before, during)
            assert during["mode"] == "audio-only"

            src0 = pres.evaluate(SOURCE_CLOCK)
            api_post(relay, "media_test_rate_cap", {"peer": end.node_id, "bps": None})
            back = poll(hall, DETAILS, lambda x: x["mode"] == "video")
            back_us = pres.evaluate(SOURCE_CLOCK) - src0
            assert back["mode"] == "video"
            print(f"video back after {back_us / 1000:.0f} ms of the source's media")
            assert back_us <= VIDEO_BACK_WITHIN_US, (back_us, back)
            assert back["audioUnderruns"] - before["audioUnderruns"] <= UNDERRUNS_TOLERATED
            final = hall.evaluate(DETAILS)
            assert final["decoderErrors"] == 0 and final["audioSeqMissing"] == 0, final
            assert pres.evaluate(PRESENTER)["audioBitrate"] == 24_000  # 64 kbit/s carried the audio: nobody asked

            audio_rate_phase(pres, hall, hq, relay, end)
            pres.click("#stop")
        finally:
            browser.close()
        rec = list((end.data_dir / "recordings").glob("*.mmrec"))
        assert rec and rec[0].stat().st_size > 10_000


def audio_rate_phase(pres, hall, hq, relay, end) -> None:
    """Cap relay -> end at 32 kbit/s for 10 s of audio: the presenter is asked for <= 16 kbit/s, every
    audio chunk still reaches the end hall in order; after the lift video and 24 kbit/s come back."""
    d = poll(hall, DETAILS, lambda d: pres.evaluate(SOURCE_CLOCK) - d["audioTsUs"] <= CAUGHT_UP_LAG_US)
    assert pres.evaluate(SOURCE_CLOCK) - d["audioTsUs"] <= CAUGHT_UP_LAG_US, d
    hall.evaluate("window.meshmeet.probe()")  # from here on: every gap in audio sequence numbers
    before = hall.evaluate(DETAILS)
    src0 = pres.evaluate(SOURCE_CLOCK)
    api_post(relay, "media_test_rate_cap", {"peer": end.node_id, "bps": 32_000})
    ps = poll(pres, PRESENTER, lambda x: x["audioBitrate"] <= 16_000)
    switch_us = ps["audioTsUs"] - src0
    print(f"32 kbit/s: presenter at {ps['audioBitrate']} bit/s after {switch_us / 1000:.0f} ms of its media")
    assert ps["audioBitrate"] <= 16_000 and switch_us <= AUDIO_RATE_WITHIN_US, (ps, layers(hq, relay, end))
    during = poll(hall, DETAILS, lambda x: x["audioTsUs"] - before["audioTsUs"] >= THROTTLED_US)
    probe = hall.evaluate("window.meshmeet.probe()")
    steps = audio_steps(probe["decoded"])
    m_relay, m_hq = media(relay), media(hq)
    links = {link["peer"]: link for link in m_relay["links"]}
    print(f"32 kbit/s for {(during['audioTsUs'] - before['audioTsUs']) / 1e6:.1f} s of audio: "
          f"underruns {before['audioUnderruns']} -> {during['audioUnderruns']}, gaps {probe['audioGaps']}, "
          f"steps {min(steps)}-{max(steps)} us, relay->end {links[end.node_id]}")
    assert during["audioTsUs"] - before["audioTsUs"] >= THROTTLED_US
    # audio that would reach the hall later than the playout budget is dropped at the relay, never
    # delivered late (docs/protocol/media.md, "Audio deadline"): while the source switches down a
    # loaded host may drop a few; more would be a loss
    missing = during["audioSeqMissing"] - before["audioSeqMissing"]
    assert missing <= LATE_DROPPED_TOLERATED and sum(b - a - 1 for a, b in probe["audioGaps"]) <= LATE_DROPPED_TOLERATED, \
        (probe["audioGaps"], during)
    assert during["audioUnderruns"] - before["audioUnderruns"] <= UNDERRUNS_TOLERATED, (before, during)
    assert during["mode"] == "audio-only" and during["decoderErrors"] == 0, during
    assert links[end.node_id]["layer"] == "audio" and links[end.node_id]["audio_request_kbps"] <= 16
    assert {x["peer"]: x for x in m_hq["links"]}[relay.node_id]["layer"] != "audio"  # HQ -> relay keeps video
    assert pres.evaluate(PRESENTER)["audioBitrate"] <= 16_000  # the request is refreshed while needed

    src0 = pres.evaluate(SOURCE_CLOCK)
    api_post(relay, "media_test_rate_cap", {"peer": end.node_id, "bps": None})
    back = poll(hall, DETAILS, lambda x: x["mode"] == "video")
    back_us = pres.evaluate(SOURCE_CLOCK) - src0
    assert back["mode"] == "video" and back_us <= VIDEO_BACK_WITHIN_US, (back_us, back)
    ps = poll(pres, PRESENTER, lambda x: x["audioBitrate"] == 24_000, timeout_s=60.0)
    up_us = ps["audioTsUs"] - src0
    print(f"after the lift: video back after {back_us / 1000:.0f} ms, 24 kbit/s after {up_us / 1000:.0f} ms of media")
    assert ps["audioBitrate"] == 24_000 and up_us <= AUDIO_RATE_BACK_WITHIN_US, ps
    final = hall.evaluate(DETAILS)
    print(f"underruns after the lift: {during['audioUnderruns']} -> {final['audioUnderruns']}")
    assert final["decoderErrors"] == 0 and final["audioSeqMissing"] == during["audioSeqMissing"], final
    # the tolerance holds per phase, as above: the cap, then the lift (video and 24 kbit/s coming back)
    assert final["audioUnderruns"] - during["audioUnderruns"] <= UNDERRUNS_TOLERATED, (during, final)
