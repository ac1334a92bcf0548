"""Issue 15 in real Chromium: the chair's "Tiếp sóng hội nghị cấp trên" card, and screen sharing at
/present.

- The chair (PIN) at a real HQ node types a dead address: the card says why in Vietnamese, then in
  English after the language switch, and that it retries; an address with a refused scheme gets the
  node's bilingual error; Stop returns the card to "not relaying".
- /present with "Share the screen": Chromium's fake screen (getDisplayMedia, 1280x720) is encoded
  at 640x360 like a camera and a hall page decodes its video and the microphone's audio.
Waits are hang guards, never performance limits.
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path

import pytest

from browser.media_fixtures import CHROMIUM, AppThread, browser_missing_reason, chromium_args
from browser.media_fixtures import capture_files  # noqa: F401 - a pytest fixture
from browser.media_fixtures import poll as poll_page
from browser.webapp_nodes import CHAIR_PIN, hq_and_hall

pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=2)]
poll = functools.partial(poll_page, timeout_s=30.0)
GUARD_MS = 60_000


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chair_card_shows_the_bilingual_error_and_stops(tmp_path: Path) -> None:
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=GUARD_MS)
    with hq_and_hall(tmp_path) as (hq, _hall), sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            chair = b.new_page()
            chair.goto(hq.url + "/chair")
            chair.get_by_test_id("chair-pin").fill(CHAIR_PIN)
            chair.get_by_test_id("chair-login").click()
            expect(chair.get_by_test_id("chair-console")).to_be_visible()
            card = chair.get_by_test_id("ingest-card")
            expect(card).to_contain_text("Tiếp sóng hội nghị cấp trên")
            status = chair.get_by_test_id("ingest-status")
            expect(status).to_have_attribute("data-state", "idle")

            chair.get_by_test_id("ingest-url").fill("ftp://127.0.0.1/hoinghi")
            chair.get_by_test_id("ingest-start").click()
            expect(chair.get_by_test_id("ingest-msg")).to_contain_text("Không hỗ trợ giao thức")

            dead = _dead_port()
            chair.get_by_test_id("ingest-url").fill(f"rtmp://127.0.0.1:{dead}/live/khoa-bi-mat")
            chair.get_by_test_id("ingest-start").click()
            expect(status).to_have_attribute("data-error", "refused")
            expect(status).to_have_attribute("data-state", "retrying")
            expect(status).to_contain_text("Nguồn từ chối kết nối")
            expect(status).to_contain_text("thử lại sau")
            expect(status).not_to_contain_text("khoa-bi-mat")  # the stream key is never shown
            chair.get_by_test_id("lang-switch").click()
            expect(status).to_contain_text("the source refused the connection")
            expect(status).to_contain_text("retry in")

            # a listening ingest: the chair who started it is shown the push path and its stream key,
            # which the open status never carries
            chair.get_by_test_id("ingest-listen").check()
            chair.get_by_test_id("ingest-port").fill(str(_dead_port()))
            chair.get_by_test_id("ingest-start").click()
            msg = chair.get_by_test_id("ingest-msg")
            expect(msg).to_contain_text("stream key: ")
            key = (Path(hq.data_dir) / "ingest-key").read_text().strip()
            expect(msg).to_contain_text(f"path /live/{key}")
            expect(status).not_to_contain_text(key)

            chair.get_by_test_id("ingest-stop").click()
            expect(status).to_have_attribute("data-state", "idle")
            expect(status).to_contain_text("Not relaying")
        finally:
            b.close()


def test_present_shares_the_screen(capture_files, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    from meshmeet.web.media_hub import MediaHub

    y4m, wav = capture_files
    with AppThread(lambda: MediaHub(recordings_dir=tmp_path / "rec", meeting_id="m1")) as app, sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(y4m, wav))
        try:
            ctx = b.new_context()
            base = f"http://localhost:{app.port}"
            pres = ctx.new_page()
            pres.goto(base + "/present")
            pres.select_option("[data-testid=video-source]", "screen")
            pres.click("#start")
            assert poll(pres, "window.meshmeetPresenter.stats().running", bool)
            track = pres.evaluate("document.getElementById('preview').srcObject.getVideoTracks()[0].getSettings()")
            assert track.get("displaySurface") == "monitor", track  # the screen, not the camera
            hall = ctx.new_page()
            hall.goto(base + "/media/hall?probe=1")
            s = poll(hall, "window.meshmeet.stats()", lambda s: s["videoFramesDecoded"] > 20 and s["audioFramesDecoded"] > 100)
            assert s["videoFramesDecoded"] > 20 and s["audioFramesDecoded"] > 100, s
            assert hall.evaluate("window.meshmeet.details()")["decoderErrors"] == 0
            # the browser's "Stop sharing" ends the presentation
            pres.evaluate("document.getElementById('preview').srcObject.getVideoTracks()[0].dispatchEvent(new Event('ended'))")
            assert poll(pres, "window.meshmeetPresenter.stats().running", lambda r: r is False) is False
        finally:
            b.close()
