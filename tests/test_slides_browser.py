"""Issue 15, part 3 end to end: the chair turns pages, every hall's TV shows the page drawn from its
own copy. Three real nodes, real Chromium.

1. Over IP: HQ and two halls; the chair logs in on /chair, opens the deck on "Trình chiếu" and
   turns pages; the TV at HQ and at hall 1 show each page, and the pixels each TV shows are
   pdfium's render of that page made here in the test (the image's identity, per hall). Hall 2
   joins late while HQ sends chunks slowly (test hook): its TV says "Đang tải tài liệu N %",
   then shows the page once its copy is whole. A recording's page turns replay on the TV at their time.
2. Over LoRa with IP down: the nodes got the deck and the LoRa key over IP, then run with no IP
   peer at all and emulated modems (a `meshmeet lora emulate` process on ptys); the chair's turns
   reach both halls' TVs by LoRa SLIDE messages.
Screenshots go to tests/artifacts/slides-*.png. Waits are hang guards, never performance limits.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser.media_fixtures import launch_page_browser  # noqa: E402
from browser.webapp_nodes import CHAIR_PIN, set_pin  # noqa: E402
from nodeproc import NodeProcess, make_commune, meshmeet, start_commune, stop_all, wait_for  # noqa: E402
from pdfmake import make_pdf  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=1)]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
GUARD_MS = 90_000
PAGES = 6

SHOWN_RGB_SHA256 = """async () => {
  const img = document.querySelector('[data-testid=tv-slide-img]');
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const rgb = new Uint8Array(c.width * c.height * 3);
  for (let i = 0, j = 0; i < d.length; i += 4) { rgb[j++] = d[i]; rgb[j++] = d[i + 1]; rgb[j++] = d[i + 2]; }
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', rgb));
  return [c.width, c.height, [...h].map((b) => b.toString(16).padStart(2, '0')).join('')];
}"""


def expected_rgb_sha256(pdf: bytes, page: int) -> tuple[int, int, str]:
    """pdfium's pixels of `page` at the TV width, rendered here (independently of any node)."""
    import pypdfium2 as pdfium

    p = pdfium.PdfDocument(pdf)[page - 1]
    bm = p.render(scale=1280 / p.get_width(), rev_byteorder=True)
    rows = b"".join(bytes(bm.buffer[r * bm.stride:r * bm.stride + 3 * bm.width]) for r in range(bm.height))
    return bm.width, bm.height, hashlib.sha256(rows).hexdigest()


def api(node: NodeProcess, name: str, args: dict | None = None) -> dict:
    req = urllib.request.Request(f"{node.url}/api/{name}", data=json.dumps(args or {}).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **node.token_header()})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def doc_whole(node: NodeProcess, doc_id: str) -> bool:
    return api(node, "doc", {"id": doc_id})["document"]["complete"]


@pytest.fixture(scope="module")
def browser():
    yield from launch_page_browser()


def open_tv(ctx, node: NodeProcess):
    tv = ctx.new_page()
    tv.goto(node.url + "/hall")
    return tv


def assert_tv_shows(tv, pdf: bytes, page: int, via: str | None = None) -> None:
    from playwright.sync_api import expect

    box = tv.get_by_test_id("tv-slide")
    expect(box).to_have_attribute("data-shown-page", str(page))
    expect(box).to_have_attribute("data-state", "shown")
    if via:
        expect(box).to_have_attribute("data-via", via)
    assert tuple(tv.evaluate(SHOWN_RGB_SHA256)) == expected_rgb_sha256(pdf, page)


def chair_login(ctx, hq: NodeProcess):
    from playwright.sync_api import expect

    chair = ctx.new_page()
    chair.goto(hq.url + "/chair")
    chair.get_by_test_id("chair-pin").fill(CHAIR_PIN)
    chair.get_by_test_id("chair-login").click()
    expect(chair.get_by_test_id("chair-console")).to_be_visible()
    return chair


def test_chair_turns_pages_and_every_tv_shows_its_own_copy(browser, tmp_path: Path, monkeypatch) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=GUARD_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    monkeypatch.setenv("MESHMEET_TEST_HOOKS", "1")  # children inherit it: sync_test_pace
    pdf = make_pdf(PAGES, pad_bytes=900_000)  # 4 chunks of 256 KiB: progress has steps to show
    hq_dir, invites = make_commune(tmp_path, 2)
    assert set_pin(hq_dir).returncode == 0
    nodes: list[NodeProcess] = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        for d, code in invites:
            meshmeet("join", "--data-dir", str(d), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        hall1 = NodeProcess(invites[0][0], "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(hall1)
        (tmp_path / "ke-hoach.pdf").write_bytes(pdf)
        mid = api(hq, "meeting_create", {"title": "Họp dân thôn"})["id"]
        doc = api(hq, "doc_add", {"meeting_id": mid, "path": str(tmp_path / "ke-hoach.pdf")})["id"]
        wait_for(lambda: doc_whole(hall1, doc), "hall 1 holds the deck", proc=hall1)

        ctx = browser.new_context(locale="vi-VN", viewport={"width": 1366, "height": 800})
        chair = chair_login(ctx, hq)
        tvs = {"hq": open_tv(ctx, hq), "hall1": open_tv(ctx, hall1)}
        for tv in tvs.values():
            expect(tv.get_by_test_id("tv-slide")).to_have_attribute("data-state", "off")

        expect(chair.locator("[data-testid=slide-doc] option")).to_have_count(1)
        chair.get_by_test_id("slide-start").click()
        expect(chair.get_by_test_id("slide-page")).to_contain_text(f"Trang 1 / {PAGES}")
        for tv in tvs.values():
            assert_tv_shows(tv, pdf, 1)
        for page in (2, 3):
            chair.get_by_test_id("slide-next").click()
            expect(chair.get_by_test_id("slide-page")).to_contain_text(f"Trang {page} / {PAGES}")
            for tv in tvs.values():
                assert_tv_shows(tv, pdf, page, via="sync")
        chair.get_by_test_id("slide-prev").click()
        for tv in tvs.values():
            assert_tv_shows(tv, pdf, 2)
        for name, tv in tvs.items():
            tv.screenshot(path=str(ARTIFACTS / f"slides-{name}.png"))

        # Hall 2 joins late; HQ sends chunk pieces slowly, so its TV has time to say how far it is.
        api(hq, "sync_test_pace", {"pieces_per_s": 2})
        hall2 = NodeProcess(invites[1][0], "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(hall2)
        tv2 = open_tv(ctx, hall2)
        box2 = tv2.get_by_test_id("tv-slide")
        expect(box2).to_have_attribute("data-state", "loading")
        expect(tv2.get_by_test_id("tv-slide-status")).to_have_text(re.compile(r"^Đang tải tài liệu \d{1,2} %$"))
        tv2.screenshot(path=str(ARTIFACTS / "slides-hall2-loading.png"))
        assert not doc_whole(hall2, doc)
        api(hq, "sync_test_pace", {"pieces_per_s": None})
        assert_tv_shows(tv2, pdf, 2)
        tv2.screenshot(path=str(ARTIFACTS / "slides-hall2.png"))

        # The page the TVs showed is recorded with the meeting at every hall; a hall cannot turn pages.
        refused = urllib.request.Request(f"{hall1.url}/api/slide_show", method="POST",
                                         data=json.dumps({"doc_id": doc, "page": 5}).encode(),
                                         headers={"Content-Type": "application/json", **hall1.token_header()})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(refused, timeout=30)
        assert e.value.code == 403
        for node in nodes:
            assert node.status()["slides"]["slide"]["page"] == 2

        # Replay: a recording holding two page turns 1.5 s apart; the TV shows each at its time.
        from meshmeet.recording.recorder import Recorder
        from meshmeet.slides.record import encode_record

        (hall1.data_dir / "recordings").mkdir(exist_ok=True)
        with open(hall1.data_dir / "recordings" / "replaytest.mmrec", "ab") as f:
            rec = Recorder(f, now=0.0)
            rec.add(encode_record(doc, 5), 0.0)
            rec.add(encode_record(doc, 4), 1.5)
            rec.close()
        replay = ctx.new_page()
        replay.goto(hall1.url + "/hall?replay=replaytest")
        assert_tv_shows(replay, pdf, 5)
        assert_tv_shows(replay, pdf, 4)
        ctx.close()
    finally:
        stop_all(nodes)


def set_lora(data_dir: Path, port: str) -> None:
    import dataclasses

    from meshmeet import config as config_mod

    cfg = config_mod.load(data_dir)
    config_mod.save(data_dir, dataclasses.replace(cfg, lora=config_mod.LoraSettings(port=port, preset="fast",
                                                                                     beacon_s=5.0)))


def test_page_turns_reach_the_tvs_over_lora_when_ip_is_down(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from test_node_lora import Emulator

    expect.set_options(timeout=GUARD_MS)
    pdf = make_pdf(PAGES)
    nodes: list[NodeProcess] = []
    emulator = None
    try:
        # Phase 1, over IP: the halls get the deck and the commune LoRa key.
        hq, halls = start_commune(tmp_path, 2, nodes)
        dirs = (hq.data_dir, halls[0].data_dir, halls[1].data_dir)
        (tmp_path / "deck.pdf").write_bytes(pdf)
        mid = api(hq, "meeting_create", {"title": "Họp khi mất mạng"})["id"]
        doc = api(hq, "doc_add", {"meeting_id": mid, "path": str(tmp_path / "deck.pdf")})["id"]
        for h in halls:
            wait_for(lambda: doc_whole(h, doc) and h.status()["lora"]["key"] == "ok", "deck and LoRa key", proc=h)
        stop_all(nodes)
        nodes.clear()

        # Phase 2: no IP peer anywhere, three emulated radios HQ(1) - hall 1(2) - hall 2(3).
        emulator = Emulator("--nodes", "3", log_path=tmp_path / "emulator.log")
        for radio, d in zip((1, 2, 3), dirs):
            set_lora(d, emulator.paths[radio])
        hq, h1, h2 = (NodeProcess(d, mdns=False) for d in dirs)
        nodes += [hq, h1, h2]
        for n in nodes:
            wait_for(lambda: n.status()["lora"]["state"] == "up", "LoRa up", proc=n)
            assert [link for link in n.status()["links"] if link["transport"] != "lora"] == []
        wait_for(lambda: {link["site"] for link in h1.status()["lora"]["links"] if link["state"] == "up"}
                 >= {"UBND xã", "Thôn 2"}, "hall 1 hears HQ and hall 2", proc=h1)

        ctx = browser.new_context(locale="vi-VN", viewport={"width": 1366, "height": 800})
        tvs = [open_tv(ctx, h) for h in (h1, h2)]
        for page in (3, 4):
            api(hq, "slide_show", {"doc_id": doc, "page": page})
            for tv in tvs:
                assert_tv_shows(tv, pdf, page, via="lora")
        tvs[1].screenshot(path=str(ARTIFACTS / "slides-lora-hall2.png"))
        for h in (h1, h2):
            assert h.status()["slides"]["lora_turns"] >= 2
        ctx.close()
    finally:
        stop_all(nodes)
        if emulator is not None:
            emulator.stop()
