"""Issue 13's real part: live audio through real node processes in namespaces over packet-level weak links.

HQ -> relay hall (clean) -> end hall, relay~end on the packet forwarder (meshmeet/testbed/packetlink.py);
scripts/bench/weaklink.py's Python presenter at HQ and subscriber at the end hall (tests/weaklink_live.py).
  profile C (80±30 ms, 3 % loss, 1 Mbit/s): audio and video; audio heard continuously, on datagrams
  profile E (100 ms, 32 kbit/s): audio and video; audio within bounds, the relay sheds the video
  all UDP dropped in the end hall's namespace: audio still arrives, over the TCP link
  B capped to E mid-stream: the relay stops sending video soon after the cap
The issue's goals (C: >= 99 % heard within 150 ms, no gap > 200 ms; E: p95 <= 400 ms, >= 97 %
delivered) are asserted with a margin for a loaded 2-core machine, and the measured figures are in
every assertion message. With the nodes' TCP links only (MESHMEET_NO_DATAGRAMS=1 in the environment,
which the nodes inherit) the C and E bounds fail. Needs root (skips otherwise); waits are hang guards.

E was bimodal in 30 s runs (2 of 8 at a full 1.5 s modem queue, p95 ~1.4 s): a young link started
at the high layer and climbed on probes that UDP 'carried' whatever the path did, 20 ms audio with a
copy was ~65 kbit/s on 32, and a late presenter process sent its missed frames in one burst. After
the young-link rules (docs/protocol/media.md) 4 of 4 30 s runs of E audio+video at load 13 on the 2
cores: p95 307-466 ms, 96.5-98.2 % delivered, no full queue.
Measured 2026-12-06 (load 1-3, 2 cores), datagrams vs MESHMEET_NO_DATAGRAMS=1: E 99.4 % delivered,
p95 232-243 ms vs 13.6-23.1 %, p95 14-17 s; C 99.6-100 % heard within 150 ms, longest gap 72-86 ms vs
79-81 %, 418-443 ms; no UDP: 100 % delivered over tcp, p95 198 ms. Every run first waits until the
end hall holds every recording (tests/weaklink_live.py restart_with): a recording fetch over E's link
during the media is a bulk TCP transfer in the modem queue (45-67 % delivered, p50 ~1.2 s with 32 KiB
pieces; 96.6 %, p95 560 ms once pieces were sized to ~0.25 s of the link).
"""

from __future__ import annotations

import pytest

from weaklink_live import (WL, figures, in_netns, relay_link, restart_with, run_media, run_name, settle_on_datagrams,
                           wait_until, weak_bed, why_not)

WHY_NOT = why_not()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(WHY_NOT is not None, reason=f"packet testbed unavailable (needs root): {WHY_NOT}")]

SECONDS = 20.0
# profile C (goal: >= 99 % heard within 150 ms of the fastest frame, 0 gaps > 200 ms)
C_HEARD_150_PCT = 97.0
C_MAX_GAP_MS = 300.0       # measured 72-86 ms on datagrams, 418-443 ms on the TCP link
# profile E (goal: p95 <= 400 ms above the base delay, >= 97 % delivered, video shed within 1 s)
E_P95_MS = 800.0
E_DELIVERED_PCT = 90.0
E_AUDIO_ONLY_SHARE = 0.7   # of the relay's status samples during the media, for the end hall's link
E_VIDEO_SHED_S = 2.0       # no video frame reaches the end hall later than this into the media (goal: 1 s)
# all UDP dropped: the TCP link carries the audio (C's loss and delay; TCP repairs every loss)
TCP_DELIVERED_PCT = 95.0
# B capped to E mid-stream (goal: video shed within 1 s of the cap)
CAP_SECONDS, CAP_AT_S = 16.0, 8.0
CAP_SHED_S = 2.0           # the latest video frame that got through was sent at most this long after the cap


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    # E first: on a bed that has carried no media yet (see restart_with); then the audio-only run
    # (no UDP), then C's audio and video, then B capped to E: each run first waits until the end
    # hall has fetched the earlier runs' recordings over the shaped link, and C's is the big one
    # (~1 MB at profile C; over B before the cap run it takes seconds)
    with weak_bed(tmp_path_factory.mktemp("wlnetns"), run_name("wlt"), "E") as b:
        yield b


def transports(m: dict) -> list[str]:
    return [r.get("transport") for r in m["status"] if "transport" in r]


def test_profile_e_audio_within_bounds_and_video_shed(bed):
    restart_with(bed, "E")
    settle_on_datagrams(bed)
    m = run_media(bed, "E", SECONDS, video=True)
    f = figures(m)
    print("profile E av:", f, "video arrivals (s):", m["video_arrivals_s"])
    assert m["delivered_pct"] >= E_DELIVERED_PCT, f"E: {m['delivered_pct']} % of the audio delivered < {E_DELIVERED_PCT} %: {f}"
    assert m["p95_ms"] is not None and m["p95_ms"] <= E_P95_MS, f"E: audio p95 {m['p95_ms']} ms > {E_P95_MS} ms: {f}"
    layers = [r["layer"] for r in m["status"] if "layer" in r]
    share = sum(1 for x in layers if x == "audio") / max(1, len(layers))
    assert share >= E_AUDIO_ONLY_SHARE, f"E: the relay kept the end hall audio-only in {share:.0%} of its status: {f}"
    late = [t for t in m["video_arrivals_s"] if t > E_VIDEO_SHED_S]
    assert not late, f"E: video still reached the end hall {len(late)} times after {E_VIDEO_SHED_S} s: {late[:10]}: {f}"
    t = transports(m)
    assert t and all(x == "datagram" for x in t), f"E: the relay's link to the end hall was not on datagrams: {t}"


def test_all_udp_dropped_audio_arrives_over_tcp(bed):
    restart_with(bed, "C")
    wait_until(lambda: (relay_link(bed) or {}).get("transport") == "datagram", "relay -> end on datagrams first")
    rule = ["INPUT", "-p", "udp", "-j", "DROP"]
    in_netns(bed, "end", "iptables", "-I", *rule)
    try:
        wait_until(lambda: (relay_link(bed) or {}).get("transport") == "tcp", "relay -> end falls back to tcp")
        m = run_media(bed, "C", SECONDS, video=False)
        f = figures(m)
        print("profile C, UDP dropped, audio:", f)
        assert m["delivered_pct"] >= TCP_DELIVERED_PCT, f"no UDP: {m['delivered_pct']} % delivered < {TCP_DELIVERED_PCT} %: {f}"
        t = transports(m)
        assert t and all(x == "tcp" for x in t), f"no UDP: the relay's link to the end hall said {t}, not tcp"
    finally:
        in_netns(bed, "end", "iptables", "-D", *rule)


def test_profile_c_audio_and_video_continuous_over_datagrams(bed):
    restart_with(bed, "C")
    settle_on_datagrams(bed)
    m = run_media(bed, "C", SECONDS, video=True)
    f = figures(m)
    print("profile C av:", f)
    assert m["heard_150ms_pct"] >= C_HEARD_150_PCT, f"C: heard within 150 ms {m['heard_150ms_pct']} % < {C_HEARD_150_PCT} %: {f}"
    assert m["max_gap_ms"] <= C_MAX_GAP_MS, f"C: longest gap between audio arrivals {m['max_gap_ms']} ms: {f}"
    t = transports(m)
    assert t and all(x == "datagram" for x in t), f"C: the relay's link to the end hall was not on datagrams: {t}"
    assert m["video_frames"] > 0, f"C: no video reached the end hall at 1 Mbit/s: {f}"


def test_capped_mid_stream_video_shed_within_bounds(bed):
    """B (video flows) capped to E 8 s into the media: the relay stops sending video soon after."""
    restart_with(bed, "B")
    settle_on_datagrams(bed)
    m = run_media(bed, "E", CAP_SECONDS, video=True, reshape=[(CAP_AT_S, "E")])
    c = WL.cap_metrics(m["rx"], m["start_at"], CAP_AT_S, CAP_SECONDS + 1.0, 100.0)
    f = figures(m)
    print("B capped to E:", c, f)
    before = [s for s, _, _ in m["rx"]["video"] if s / 1e9 < m["start_at"] + CAP_AT_S]
    assert before, f"no video reached the end hall over B before the cap: {f}"
    assert c["video_shed_after_cap_s"] <= CAP_SHED_S, f"video still left the relay {c['video_shed_after_cap_s']} s after the cap: {c}"
