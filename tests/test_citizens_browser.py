"""Issue 17 end to end in real Chromium with a phone's viewport: a resident on the hall's Wi-Fi opens
/y-kien at the hall node, sees the announcement, is refused a script, a 1 MB body and a flood with
clear Vietnamese errors, sends feedback in decomposed Vietnamese with emoji and gets a short code;
it reaches the chair's inbox at HQ (two real node processes); the chair's reply appears on the
phone by the code; the hall TV shows the feedback (never the phone number) and the page's QR code.
Waits are hang guards (Playwright's expect timeouts), never performance limits."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from browser.media_fixtures import launch_page_browser
from browser.webapp_nodes import CHAIR_PIN
from test_citizens_nodes import api, hq_and_hall, residents_url

pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=2)]

GUARD_MS = 60_000
PHONE_VIEWPORT = {"width": 360, "height": 740}
ANDROID_UA = ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Mobile Safari/537.36")
FEEDBACK = unicodedata.normalize("NFD", "Đề nghị xã sửa cống ở thôn Đông 🙏🏽")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def browser():
    yield from launch_page_browser()


def test_resident_feedback_from_a_phone_to_hq_and_back(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=GUARD_MS)
    with hq_and_hall(tmp_path, pin=True) as (hq, hall):
        assert api(hq, "announce", {"text": "Họp dân thôn Đông lúc 19 giờ"})[0] == 200
        phone_ctx = browser.new_context(locale="vi-VN", viewport=PHONE_VIEWPORT, is_mobile=True, has_touch=True,
                                        user_agent=ANDROID_UA, device_scale_factor=2)
        phone = phone_ctx.new_page()
        phone.goto(residents_url(hall) + "/y-kien")
        expect(phone.get_by_test_id("yk-announcements")).to_contain_text("Họp dân thôn Đông", timeout=GUARD_MS)
        # Phone-sized: nothing wider than the screen.
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE_VIEWPORT["width"]

        phone.get_by_test_id("yk-text").fill('<script>window.__pwned=1</script>')
        phone.get_by_test_id("yk-send").click()
        expect(phone.get_by_test_id("yk-msg")).to_contain_text("Không được chứa mã HTML")
        # 1 MB straight at the route (what a hostile page script could do from this origin).
        status = phone.evaluate("""fetch('/y-kien/gui', {method: 'POST', headers: {'Content-Type':
            'application/x-www-form-urlencoded'}, body: 'text=' + 'a'.repeat(1 << 20)}).then(r => r.status)""")
        assert status == 413

        phone.get_by_test_id("yk-text").fill(FEEDBACK)
        phone.get_by_test_id("yk-phone").fill("0912 345 678")
        phone.get_by_test_id("yk-send").click()
        expect(phone.get_by_test_id("yk-msg")).to_contain_text("Đã gửi ý kiến")
        code = phone.get_by_test_id("yk-code").text_content()
        assert code and len(code) == 9
        ARTIFACTS.mkdir(exist_ok=True)
        phone.screenshot(path=str(ARTIFACTS / "citizens-phone.png"), full_page=True)
        # The device's burst is 3: the third more in a row is refused with a clear wait.
        for _ in range(2):
            phone.get_by_test_id("yk-text").fill("Thêm một ý kiến nữa")
            phone.get_by_test_id("yk-send").click()
            expect(phone.get_by_test_id("yk-msg")).to_contain_text("Đã gửi")
        phone.get_by_test_id("yk-text").fill("Ý kiến thứ tư")
        phone.get_by_test_id("yk-send").click()
        expect(phone.get_by_test_id("yk-msg")).to_contain_text("Bạn gửi quá nhanh")
        assert phone.evaluate("window.__pwned") is None

        # HQ's chair sees it in the inbox and replies.
        chair = browser.new_context(locale="vi-VN", viewport={"width": 1366, "height": 900}).new_page()
        chair.goto(hq.url + "/chair")
        chair.get_by_test_id("chair-pin").fill(CHAIR_PIN)
        chair.get_by_test_id("chair-login").click()
        nfc = unicodedata.normalize("NFC", FEEDBACK)
        row = chair.get_by_test_id("inbox-row").filter(has_text=nfc)
        expect(row).to_be_visible(timeout=GUARD_MS)
        assert "0912" not in chair.get_by_test_id("feedback-inbox").text_content()
        row.get_by_test_id("reply-text").fill("Xã sẽ cho sửa trong tuần này")
        row.get_by_test_id("reply-send").click()

        # The reply comes back to the phone by the short code (typed in lower case).
        phone.get_by_test_id("yk-ma").fill(code.lower())
        _lookup_until(phone, expect)
        expect(phone.get_by_test_id("yk-reply")).to_contain_text("Xã sẽ cho sửa trong tuần này")

        # The hall TV: the page's QR code and the feedback, never the phone number.
        tv = browser.new_context(locale="vi-VN", viewport={"width": 1920, "height": 1080}).new_page()
        tv.goto(hall.url + "/tv")
        expect(tv.get_by_test_id("tv-yk-wall")).to_contain_text(nfc)
        assert tv.evaluate("document.querySelector('[data-testid=tv-yk-qr]').naturalWidth") > 0
        expect(tv.get_by_test_id("tv-yk-url")).to_contain_text(f":{hall.status()['citizens']['residents_port']}/y-kien")
        assert "0912" not in tv.content()


def _lookup_until(phone, expect) -> bool:
    """Press "Xem" until HQ's reply has come through sync (each press is one rate-limited lookup)."""
    import time

    deadline = time.monotonic() + GUARD_MS / 1000
    while time.monotonic() < deadline:
        phone.get_by_test_id("yk-lookup").click()
        expect(phone.get_by_test_id("yk-lookup-msg")).not_to_have_text("Đang tìm…")
        if phone.get_by_test_id("yk-reply").count():
            return True
        phone.wait_for_timeout(1000)
    raise AssertionError("HQ's reply never reached the phone")
