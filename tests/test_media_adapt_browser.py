"""In headless Chromium: the presenter honours an audio encoding request (60 ms Opus frames, in-band
FEC, a lower bitrate: kind 0x06 long form) and the hall player decodes them through its jitter
buffer (jitter.js in the worklet), while reporting what it decoded to its node once a second."""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

import pytest

from browser.media_fixtures import CHROMIUM, AppThread, audio_steps, chromium_args
from browser.media_fixtures import capture_files  # noqa: F401 - a pytest fixture
from browser.media_fixtures import poll as poll_page
from meshmeet.media import chunk as C

poll = functools.partial(poll_page, timeout_s=30.0)  # a hang guard for one wait


@contextmanager
def presenter_and_hall(capture_files: tuple, hall_path: str) -> Iterator[tuple]:
    """A media hub, the presenter page started and a hall page at `hall_path` decoding its audio."""
    from playwright.sync_api import sync_playwright

    from meshmeet.web.media_hub import MediaHub

    y4m, wav = capture_files
    with AppThread(lambda: MediaHub()) as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(y4m, wav))
        try:
            ctx = browser.new_context()
            base = f"http://localhost:{app.port}"
            pres = ctx.new_page()
            pres.goto(base + "/present")
            pres.click("#start")
            assert poll(pres, "window.meshmeetPresenter.stats().running", bool)
            hall = ctx.new_page()
            hall.goto(base + hall_path)
            poll(hall, "window.meshmeet.stats()", lambda s: s["audioFramesDecoded"] > 50)
            yield app, pres, hall
        finally:
            browser.close()
pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=2)]


def test_presenter_takes_longer_frames_and_fec_and_the_player_reports(capture_files) -> None:
    with presenter_and_hall(capture_files, "/media/hall?probe=1") as (app, pres, hall):
        st = pres.evaluate("window.meshmeetPresenter.stats()")
        assert (st["audioFrameMs"], st["audioFecPercent"], st["audioBitrate"]) == (20, 0, 24_000)

        # the relays' request (what a narrow, lossy datagram link asks for)
        request = C.encode(C.AudioRateRequest(16, 60, 5))
        app.call(lambda: app.hub.feed(request))
        st = poll(pres, "window.meshmeetPresenter.stats()", lambda s: s["audioFrameMs"] == 60)
        assert (st["audioFrameMs"], st["audioFecPercent"], st["audioBitrate"]) == (60, 5, 16_000)
        hall.evaluate("window.meshmeet.probe()")  # from here on
        d0 = hall.evaluate("window.meshmeet.details()")
        poll(hall, "window.meshmeet.details()", lambda d: d["audioTsUs"] - d0["audioTsUs"] >= 3_000_000)
        probe = hall.evaluate("window.meshmeet.probe()")
        d1 = hall.evaluate("window.meshmeet.details()")
        steps = audio_steps(probe["decoded"])
        long_steps = [s for s in steps if abs(s - 60_000) <= 1]
        assert len(long_steps) >= 40 and len(long_steps) >= 0.9 * len(steps), steps  # 60 ms frames decoded
        assert probe["audioGaps"] == [] and d1["decoderErrors"] == 0, (probe["audioGaps"], d1)
        assert d1["audioUnderruns"] - d0["audioUnderruns"] <= 1, (d0, d1)
        assert 40 <= d1["targetMs"] <= 300 and d1["targetMs"] >= 60 + 20  # a frame and the margin at least

        # back to 20 ms frames at the same bitrate: Chromium's encoder keeps its frame duration through a
        # configure() that changes nothing else, so the presenter re-creates it (flush, reset, configure)
        app.call(lambda: app.hub.feed(C.encode(C.AudioRateRequest(16, 20, 5))))
        poll(pres, "window.meshmeetPresenter.stats()", lambda s: s["audioFrameMs"] == 20)
        poll(hall, "window.meshmeet.details()", lambda d: d["audioTsUs"] - d1["audioTsUs"] >= 500_000)
        hall.evaluate("window.meshmeet.probe()")  # from here on
        d2 = hall.evaluate("window.meshmeet.details()")
        poll(hall, "window.meshmeet.details()", lambda d: d["audioTsUs"] - d2["audioTsUs"] >= 2_000_000)
        probe = hall.evaluate("window.meshmeet.probe()")
        steps = audio_steps(probe["decoded"])
        short_steps = [s for s in steps if abs(s - 20_000) <= 1]
        assert len(short_steps) >= 80 and len(short_steps) >= 0.9 * len(steps), steps  # 20 ms frames again
        assert probe["audioGaps"] == [] and hall.evaluate("window.meshmeet.details()")["decoderErrors"] == 0

        # the player reports what it decoded: its node knows it is not stalled
        def lag():
            links = app.hub.stats()["links"]
            return [(x["peer"], x["player_lag_ms"]) for x in links]
        sub = next(iter(app.call(lambda: dict(app.hub._subs))))
        reported = poll(hall, "1", lambda _: app.call(lambda: app.hub.relay._links[sub].player.reported_at) is not None)
        assert reported
        assert all(ms == 0.0 for _, ms in app.call(lag))


def test_late_audio_is_dropped_at_the_relay_and_the_player_conceals_it(capture_files) -> None:
    """A hall link too narrow even for the lowest audio (16 kbit/s): audio that waited past the
    playout budget is dropped at the relay (never sent late), and the player conceals the gaps."""
    with presenter_and_hall(capture_files, "/media/hall") as (app, pres, hall):
        sub = next(iter(app.call(lambda: dict(app.hub._subs))))
        d0 = hall.evaluate("window.meshmeet.details()")
        app.call(lambda: app.hub.relay.take_max_audio_wait_ms(sub))
        app.call(lambda: app.hub.set_rate_cap(sub, 16_000))
        poll(hall, "window.meshmeet.details()", lambda d: d["audioTsUs"] - d0["audioTsUs"] >= 4_000_000
             and d["audioSeqMissing"] > d0["audioSeqMissing"])
        d1 = hall.evaluate("window.meshmeet.details()")
        dropped = app.call(lambda: app.hub.relay.link_stats(sub, app.hub._clock()).audio_late_dropped)
        waited_ms = app.call(lambda: app.hub.relay.take_max_audio_wait_ms(sub))
        assert dropped > 0 and waited_ms <= 250, (dropped, waited_ms)
        assert 0 < d1["audioSeqMissing"] - d0["audioSeqMissing"] <= dropped
        assert d1["concealedMs"] > d0["concealedMs"], (d0, d1)  # gaps were concealed, not just silent
        assert d1["decoderErrors"] == 0
