"""Player receiver reports: the parser (hostile text), the lag they give, a stalled player shed by
the relay, and the gateway's intake over a real WebSocket (a bad report closes only that page)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from browser.media_fixtures import AppThread
from media_sim import Source
from meshmeet.media import chunk as C
from meshmeet.media.player_report import (PLAYER_LAG_SLACK_S, PLAYER_REPORT_STALE_S, PlayerLag, PlayerReport,
                                          PlayerReportError, parse_player_report)
from meshmeet.media.relay import MediaRelay
from meshmeet.web.media_hub import MediaHub


def report(**kw) -> str:
    d = {"type": "report", "audioSeq": 10, "audioTsUs": 200_000, "decoded": 11, "underruns": 0, "bufferMs": 60.5,
         "targetMs": 80, "jitterMs": 3.2, "missing": 0}
    d.update(kw)
    return json.dumps(d)


def test_a_good_report_parses() -> None:
    assert parse_player_report(report()) == PlayerReport(10, 200_000, 11, 0, 60.5, 80.0, 3.2, 0)
    assert parse_player_report(report(audioSeq=None, audioTsUs=None)).audio_ts_us is None


def test_bad_reports_are_refused() -> None:
    bad = [report(type="x"), report(audioSeq=-1), report(audioSeq=2**32), report(audioTsUs=1.5),
           report(decoded=True), report(bufferMs=float("nan")), report(targetMs=1e9),
           report(extra=1), '{"type":"report"}', "[]", "not json", report(jitterMs="3"),
           report(underruns=2**60), "{" * 600]
    for text in bad:
        try:
            parse_player_report(text)
        except PlayerReportError:
            continue
        raise AssertionError(f"accepted {text!r}")


@settings(max_examples=500, deadline=None)  # a loaded CI machine stalls single examples
@given(st.one_of(st.text(max_size=600), st.binary(max_size=600),
                 st.dictionaries(st.sampled_from(["type", "audioSeq", "audioTsUs", "decoded", "underruns", "bufferMs",
                                                  "targetMs", "jitterMs", "missing", "x"]),
                                 st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)))
                 .map(json.dumps)))
def test_hostile_reports_only_raise_player_report_error(text) -> None:
    try:
        rep = parse_player_report(text)
    except PlayerReportError:
        return
    assert 0 <= rep.decoded and 0 <= rep.buffer_ms <= 60_000  # anything accepted is in range


def audio(seq: int) -> bytes:
    return C.encode(C.Chunk(0, 0, 0, True, 0, seq, seq * 20_000, 20_000, b"x"))


def test_player_lag() -> None:
    lag = PlayerLag()
    assert lag.lag_s(100.0) == 0.0  # never reported (an older page, a test client): nothing is assumed
    lag.sent(audio(100))  # 2.0 s of media
    lag.report(10.0, 1_950_000)  # decoded 50 ms behind: normal
    assert lag.lag_s(10.0) == 0.0
    lag.report(11.0, 500_000)  # 1.5 s behind: one late report decides nothing
    assert lag.lag_s(11.0) == 0.0
    lag.report(12.0, 400_000)  # 1.6 s behind, again: a stalled page
    assert abs(lag.lag_s(12.0) - (1.5 - PLAYER_LAG_SLACK_S)) < 1e-9
    lag.report(13.0, 1_990_000)
    assert lag.lag_s(13.0 + PLAYER_REPORT_STALE_S + 1) > 0  # reported, then fell silent
    lag.report(20.0, 99_000_000)  # a new source's timestamps: not a lag
    assert lag.lag_s(20.0) == 0.0


def run_browser_link(r: MediaRelay, src: Source, t0: float, t1: float, decoded_lag_s: float | None) -> None:
    """Source -> relay -> browser link "b" that takes everything; its page reports once a second
    what it decoded, `decoded_lag_s` behind what it was sent (None: no reports)."""
    last_ts = None
    for n in range(round(t0 / 0.005), round(t1 / 0.005)):
        t = n * 0.005
        src.t = t
        msgs = [src.audio()] if n % 4 == 0 else []
        if n % 10 == 0:
            msgs += src.video()
        for m in msgs:
            r.receive("src", m, t)
        r.tick(t)
        while (d := r.pop("b", t)) is not None:
            if d[0] == C.KIND_CHUNK and d[1] >> 6 == 0:
                last_ts = C.parse(d).timestamp_us
        if decoded_lag_s is not None and n % 200 == 0 and last_ts is not None:
            r.player_report("b", t, max(0, last_ts - round(decoded_lag_s * 1e6)))


def test_a_stalled_player_is_shed_and_a_healthy_one_is_not() -> None:
    for lag_s, shed in ((0.05, False), (2.0, True)):
        r, src = MediaRelay(source="src"), Source()
        for m in src.configs():
            r.receive("src", m, 0.0)
        r.add_link("b", 0.0)
        src.force_key.update({0, 1})
        run_browser_link(r, src, 0.0, 3.0, 0.0)
        assert r.link_stats("b", 3.0).layer == "high"
        run_browser_link(r, src, 3.0, 6.0, lag_s)
        stats = r.link_stats("b", 6.0)
        assert (stats.layer != "high") == shed, (lag_s, stats)
        assert (stats.player_lag_ms > 0) == shed


def test_gateway_takes_reports_and_closes_only_a_page_that_sends_a_bad_one() -> None:
    with AppThread(lambda: MediaHub()) as app:
        async def main() -> None:
            base = f"http://127.0.0.1:{app.port}"
            async with aiohttp.ClientSession() as http:
                good = await http.ws_connect(base + "/media/ws/hall")
                bad = await http.ws_connect(base + "/media/ws/hall")
                for ws in (good, bad):
                    assert (await asyncio.wait_for(ws.receive(), 10)).type == aiohttp.WSMsgType.TEXT  # its id
                    role = await asyncio.wait_for(ws.receive(), 10)  # which voice this site speaks (none)
                    assert role.type == aiohttp.WSMsgType.TEXT and '"voice"' in role.data
                await good.send_str(report())
                await bad.send_str(report(bufferMs=-1))
                msg = await asyncio.wait_for(bad.receive(), 10)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert bad.close_code == 1008
                await good.send_str(report())
                await asyncio.sleep(0.3)
                assert not good.closed
                hub = app.hub
                assert hub.stats()["subscribers"] == 1
                assert hub.relay._links[next(iter(hub._subs))].player.reported_at is not None
                await good.close()
        asyncio.run(main())
