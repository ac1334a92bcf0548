"""Issue 15 part 1 end to end: the chair and the floor holder speak at once, three real nodes, real Chromium.

HQ -> relay hall -> end hall on loopback. The chair gives the floor to the end hall; HQ's presenter
page (fake microphone: 440/880 Hz alternating) stays live as voice 1, and the end hall's TV page
(`/media/hall?speak=1`, another Chromium whose fake microphone plays a steady 1,000 Hz) captures and
sends the hall's voice (voice 0) while it plays the chair. The relay hall's player (the third hall)
decodes both voices, each with contiguous sequence numbers and its own tones; HQ's player gets the
end hall's tone only as voice 0 and no node refuses a voice (none was sent back towards its origin).
"""

from __future__ import annotations

import math
import time
import struct
import wave
from pathlib import Path

import pytest

from browser.media_fixtures import CHROMIUM, chromium_args, poll
from browser.media_fixtures import capture_files  # noqa: F401 - a pytest fixture
from browser.node_chain import api_post, media, node_chain

# The sequence gaps this test first saw under load (20-180 frames) were the relays' own: a node
# stalled 0.2-0.45 s (two Chromiums and three nodes on two shared cores), the datagrams waiting in
# its socket buffer looked like a path queue beyond the playout budget and the sender flushed that
# link's audio for up to 2 s; and audio that waited for a stalled node or hub went past the audio
# deadline. Fixed by kernel receive stamps (node/udp_arrival.py) and relay.process_stalled; see
# tests/test_media_stalls.py. A failure prints each node's late drops, transports, losses and each
# page's per-voice counts. Still possible under extreme load (seen once at load ~20): a link whose
# reports stop for 3 s falls back to TCP and back, and the player sees chunks of both paths reordered.
pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=1)]

HALL_HZ = 1000
FRAMES = 100  # 2 s of each voice, judged after both flow


def write_tone(path: Path, hz: int, seconds: float = 10.0, rate: int = 48000) -> None:
    n = int(seconds * rate)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate))) for i in range(n)))


def local(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")  # a secure context for WebCodecs


def near(hz: int, want: int) -> bool:
    return abs(hz - want) <= 0.05 * want


def diagnosis(nodes, pages) -> dict:
    """What a failure message needs: per node its relay links (late drops, queue, transport, loss),
    datagram and media counters, hub browser links; per page its voice stats."""
    out: dict = {}
    for n, name in zip(nodes, ("hq", "relay", "end")):
        m = media(n)
        out[name] = {"links": [{k: x.get(k) for k in ("site", "layer", "queue_ms", "audio_late_dropped", "transport", "loss")}
                               for x in m["links"]],
                     "browsers": [{k: x.get(k) for k in ("peer", "queue_ms", "audio_late_dropped", "player_lag_ms")}
                                  for x in m["browsers"]],
                     "counters": m["counters"], "dgram": m["datagrams"]["channels"], "voices": m["floor"]["voices"]}
    for name, page in pages.items():
        try:
            out[name] = page.evaluate("window.meshmeet ? {voices: window.meshmeet.details().voices, v: window.meshmeet.voice()}"
                                      " : window.meshmeetPresenter.stats()")
        except Exception as e:  # noqa: BLE001 - a diagnosis must not hide the failure
            out[name] = repr(e)
    return out


def test_chair_and_floor_holder_speak_at_once(capture_files, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    y4m, wav = capture_files
    tone = tmp_path / "hall.wav"
    write_tone(tone, HALL_HZ)
    t0 = time.monotonic()
    lap = lambda what: print(f"{time.monotonic() - t0:6.1f} s {what}")  # noqa: E731 - where the time goes
    with node_chain(tmp_path) as (hq, relay, end), sync_playwright() as p:
        lap("nodes up")
        chair_browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(y4m, wav))
        hall_browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(y4m, tone))
        try:
            api_post(hq, "floor", {"action": "grant", "site": "Thôn 2"})
            ctx = chair_browser.new_context()
            pres = ctx.new_page()
            pres.goto(local(hq.url) + "/present")
            pres.click("#start")
            assert poll(pres, "window.meshmeetPresenter.stats().running", bool)
            speaker = hall_browser.new_context().new_page()
            speaker.goto(local(end.url) + "/media/hall?speak=1")
            sent = poll(speaker, "window.meshmeet.voice()", lambda v: v["sending"] and v["chunksSent"] > 20)
            assert sent["role"] == {"mine": 0, "root": False} and sent["chunksSent"] > 20, sent
            lap("both speak")
            third = ctx.new_page()
            third.goto(local(relay.url) + "/media/hall?probe=1")
            at_hq = ctx.new_page()
            at_hq.goto(local(hq.url) + "/media/hall?probe=1")
            both = lambda v: bool(v) and "0" in v and "1" in v  # noqa: E731
            base = {}
            for name, page in (("third", third), ("hq", at_hq)):
                base[name] = poll(page, "window.meshmeet.details().voices", both)
                assert both(base[name]), (name, base[name], media(relay)["floor"])
                page.evaluate("window.meshmeet.probe()")  # judge steady flow only
            lap("both voices heard")
            got = {}
            for name, page in (("third", third), ("hq", at_hq)):
                b = base[name]
                poll(page, "window.meshmeet.details().voices",
                     lambda v: all(v[k]["decoded"] - b[k]["decoded"] >= FRAMES for k in ("0", "1")))
                got[name] = page.evaluate("window.meshmeet.probe()")
            lap("judged")
            # the third hall: both voices, each in order with its own tone
            pr = got["third"]
            tones = {v: [hz for voice, hz in pr["voiceTones"] if voice == v] for v in (0, 1)}
            assert len(tones[0]) >= 20 and len(tones[1]) >= 20, {v: len(t) for v, t in tones.items()}
            assert sum(near(hz, HALL_HZ) for hz in tones[0]) >= 0.8 * len(tones[0]), tones[0][:50]
            assert sum(near(hz, 440) or near(hz, 880) for hz in tones[1]) >= 0.8 * len(tones[1]), tones[1][:50]
            assert not any(near(hz, HALL_HZ) for hz in tones[1])
            diag = diagnosis((hq, relay, end), {"pres": pres, "speaker": speaker, "third": third, "at_hq": at_hq})
            assert pr["voiceGaps"] == [], (pr["voiceGaps"], diag)  # contiguous sequence numbers per voice
            details = third.evaluate("window.meshmeet.details()")
            assert details["decoderErrors"] == 0 and details["formatErrors"] == 0, details
            # HQ hears the floor holder's tone as voice 0 only; its own chair voice is not the hall's
            hq_tones = got["hq"]["voiceTones"]
            assert sum(near(hz, HALL_HZ) for v, hz in hq_tones if v == 0) >= 20
            assert not any(near(hz, HALL_HZ) for v, hz in hq_tones if v != 0)
            assert got["hq"]["voiceGaps"] == [], (got["hq"]["voiceGaps"], diag)
            for n in (hq, relay, end):
                assert media(n)["counters"]["voices_refused"] == 0, media(n)["counters"]
            # the speaking page does not play its own voice
            assert speaker.evaluate("window.meshmeet.details().mutedVoice") == 0
        finally:
            chair_browser.close()
            hall_browser.close()
