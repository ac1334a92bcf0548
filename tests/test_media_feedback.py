"""Receiver feedback on datagram links (feedback.py + relay.py): the estimate, the ladder it
drives, audio encoding requests, redundancy, the audio deadline, and the weak-link profiles of
issue 13 on an emulated datagram path (tests/media_dgram_sim.py)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from media_dgram_sim import DGRAM_FRAMING_BYTES, Path, SourceF, audio_delays, run, share_within
from media_sim import Source
from meshmeet.media import chunk as C
from meshmeet.media.audio_rate import AUDIO_PLANS, AudioLoad, AudioWant, fec_percent, plan_audio
from meshmeet.media.feedback import (INCREASE_AFTER_S, MIN_ESTIMATE_BPS, OVERUSE_DELAY_S, LinkFeedback)
from meshmeet.media.ladder import AUDIO_LEVEL
from meshmeet.media.relay import MediaRelay
from meshmeet.media.relay_judge import DOWNGRADE_HOLD_S

OFFERED_BPS = 320_000.0  # what the source's simulcast (both layers + audio) takes on a mesh link

any_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 2), any_float, any_float, any_float, any_float), max_size=60))
def test_estimator_never_raises_and_stays_sane(reports) -> None:
    fb = LinkFeedback()
    t = 0.0
    for dt, loss, jit, trend, rtt in reports:
        t += dt
        fb.report(t, loss, jit, trend, rtt, 100_000.0)
        assert fb.estimate_bps is None or (math.isfinite(fb.estimate_bps) and fb.estimate_bps >= MIN_ESTIMATE_BPS)
        assert 0.0 <= fb.loss <= 1.0


def test_estimator_refuses_values_out_of_range() -> None:
    fb = LinkFeedback()
    for bad in ((math.nan, 0.0, 0.0, 0.1), (1.5, 0.0, 0.0, 0.1), (0.0, -1.0, 0.0, 0.1), (0.0, 0.0, math.inf, 0.1),
                (0.0, 0.0, 0.0, 1e9), (True, 0.0, 0.0, 0.1)):
        assert not fb.report(1.0, *bad, 50_000.0)
    assert fb.reports == 0 and fb.last_report_at is None
    assert fb.report(1.0, 0.0, 0.0, 0.0, 0.1, 50_000.0)
    assert not fb.report(0.5, 0.0, 0.0, 0.0, 0.1, 50_000.0)  # out of order


def video_relay() -> tuple[MediaRelay, Source]:
    """A relay with one datagram tree link carrying the simulcast (both layers) of a steady source."""
    r, src = MediaRelay(source="src"), Source()
    for m in src.configs():
        r.receive("src", m, 0.0)
    r.add_link("dg", 0.0, simulcast=True)
    r.set_link_framing("dg", DGRAM_FRAMING_BYTES)
    src.force_key.update({0, 1})
    return r, src


def advance(r: MediaRelay, src: Source, t0: float, t1: float, on_step=None) -> None:
    """Source and relay from t0 to t1 in 5 ms steps; the datagram link takes all it is given."""
    for n in range(round(t0 / 0.005), round(t1 / 0.005)):
        t = n * 0.005
        src.t = t
        msgs = [src.audio()] if n % 4 == 0 else []
        if n % 10 == 0:
            msgs += src.video()
        for m in msgs:
            for o in r.receive("src", m, t):
                src.force_key.add(C.parse(o.data).layer) if o.data[0] == C.KIND_KEYFRAME_REQUEST else None
        for o in r.tick(t):
            if o.data[0] == C.KIND_KEYFRAME_REQUEST:
                src.force_key.add(C.parse(o.data).layer)
        while r.pop("dg", t) is not None:
            pass
        if on_step is not None:
            on_step(t)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0.2, 0.5), min_size=12, max_size=12), st.floats(0.0, 0.02),
       st.floats(0.05, 0.6), st.floats(0.0, 0.08))
def test_sustained_overuse_sheds_video_within_a_second(gaps, jitter_s, growth_s_per_s, loss) -> None:
    """Reports every 200-500 ms whose queueing delay keeps growing (the link carries less than it
    is sent): within ~1 s of the first such report the estimate is below what is offered, and video
    is shed (the level the link is at needs no more than the estimate)."""
    r, src = video_relay()
    advance(r, src, 0.0, 3.0)
    assert r._links["dg"].level == 0
    t, delay, first_over = 3.0, 0.0, None
    for gap in gaps:
        advance(r, src, t, t + gap)
        t += gap
        delay += growth_s_per_s * gap
        r.link_feedback("dg", t, loss, jitter_s, delay, 0.2)
        if first_over is None and delay > OVERUSE_DELAY_S + 2 * jitter_s:
            first_over = t
        if first_over is not None and t - first_over >= 1.0:
            break
    advance(r, src, t, t + DOWNGRADE_HOLD_S + 0.06)  # (a level left less than DOWNGRADE_HOLD_S ago waits)
    t += DOWNGRADE_HOLD_S + 0.06
    fb = r._links["dg"].feedback
    assert first_over is not None
    assert fb.estimate_bps is not None and fb.estimate_bps < OFFERED_BPS
    lk = r._links["dg"]
    assert lk.level > 0, "video not shed"
    if lk.level < AUDIO_LEVEL:
        assert r._level_bps(lk, lk.level) <= fb.estimate_bps
    elif r._level_bps(lk, AUDIO_LEVEL) > fb.estimate_bps:  # even the audio does not fit: less is asked for
        stats = r.link_stats("dg", t)
        assert stats.audio_request_kbps is not None or stats.audio_frame_ms is not None


@settings(max_examples=6, deadline=None)
@given(st.floats(0.2, 0.5), st.floats(0.0, 0.015), st.floats(0.0, 0.05))
def test_recovery_only_after_stability(gap, jitter_s, loss) -> None:
    """After a decrease, good reports do not raise the estimate for INCREASE_AFTER_S; then it
    grows, never past 1.5 x what was sent; the link climbs back only after steady time."""
    r, src = video_relay()
    advance(r, src, 0.0, 3.0)
    t = 3.0
    for delay in (0.1, 0.3, 0.5, 0.7):  # overuse
        advance(r, src, t, t + gap)
        t += gap
        r.link_feedback("dg", t, 0.0, 0.0, delay, 0.2)
    fb = r._links["dg"].feedback
    low_est, decreased_at = fb.estimate_bps, fb.last_decrease_at
    level_after = r._links["dg"].level
    assert low_est is not None and level_after > 0
    ests, levels = [], []
    while t < decreased_at + 30:
        advance(r, src, t, t + gap)
        t += gap
        r.link_feedback("dg", t, loss, jitter_s, jitter_s, 0.2)  # steady: queueing delay no more than jitter
        ests.append((t, fb.estimate_bps))
        levels.append((t, r._links["dg"].level))
    assert all(e <= low_est for tt, e in ests if tt - decreased_at < INCREASE_AFTER_S)
    assert max(e for _, e in ests) > low_est, "never recovered"
    climbed = [tt for tt, lv in levels if lv < level_after]
    assert climbed, "never climbed back"
    assert climbed[0] - decreased_at >= INCREASE_AFTER_S


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.floats(0.2, 0.5), st.floats(0.0, 0.03), st.floats(0.0, 0.05), st.floats(0.0, 0.08)),
                min_size=5, max_size=20))
def test_audio_never_dropped_for_lateness_when_delay_is_small(reports) -> None:
    r, src = video_relay()
    t = 0.0
    for gap, jitter_s, delay, loss in reports:
        advance(r, src, t, t + gap)
        t += gap
        r.link_feedback("dg", t, loss, jitter_s, delay, 0.1)
    assert r._links["dg"].dropped_audio == 0
    assert r._links["dg"].flush_until == 0.0


@settings(max_examples=200, deadline=None)
@given(st.floats(0.05, 0.5), st.lists(st.tuples(st.booleans(), st.floats(0, 0.2), st.integers(0, 3)), max_size=80))
def test_audio_deadline(deadline_s, events) -> None:
    """Audio that waited longer than the budget is dropped and counted, never sent; every audio
    chunk is sent or counted; decoder configs are never dropped."""
    r = MediaRelay(source="src", audio_deadline_s=deadline_s)
    r.add_link("a", 0.0)
    t, seq, queued_at, sent, configs_in, configs_out = 0.0, 0, {}, [], 0, 0
    for is_config, dt, pops in events:
        t += dt
        if is_config:
            r.receive("src", C.encode(C.DecoderConfig(0, 0, seq & 0xFF, {"codec": "opus"})), t)
            configs_in += 1
        else:
            r.receive("src", C.encode(C.Chunk(0, 0, 0, True, 0, seq, seq * 20000, 20000, b"x")), t)
            queued_at[seq] = t
        seq += 1
        for _ in range(pops):
            d = r.pop("a", t)
            if d is None:
                break
            if d[0] == C.KIND_CHUNK:
                s = C.parse(d).seq
                assert t - queued_at[s] <= deadline_s + 1e-9
                sent.append(s)
            elif d[0] == C.KIND_CONFIG:
                configs_out += 1
    t += 10.0
    while (d := r.pop("a", t)) is not None:
        configs_out += d[0] == C.KIND_CONFIG
        assert d[0] != C.KIND_CHUNK  # everything still queued is late by now
    assert sent == sorted(sent)
    assert len(sent) + r._links["a"].dropped_audio == len(queued_at)
    assert configs_out == configs_in
    assert r.link_stats("a", t).audio_late_dropped == r._links["a"].dropped_audio


# ---- audio encoding requests: the wire, the plan, the merge -----------------------------------

@given(st.integers(6, 255), st.sampled_from([20, 40, 60]), st.integers(0, 100))
def test_audio_encoding_request_round_trip(kbps, frame_ms, fec) -> None:
    req = C.AudioRateRequest(kbps, frame_ms, fec)
    data = C.encode(req)
    assert len(data) == (3 if (frame_ms, fec) == (20, 0) else 6)
    assert C.parse(data) == req


def test_plan_prefers_lower_rate_then_longer_frames() -> None:
    load = AudioLoad(measured_bps=24_000 + 50 * 14 * 8, frames_per_s=50, framing_bytes=DGRAM_FRAMING_BYTES)
    assert plan_audio(200_000, load) is None  # fits
    assert plan_audio(45_000, load) == (16, 20)
    assert plan_audio(32_000, load) == (16, 40)  # 16 kbit/s in 20 ms frames needs 40.8 kbit/s with framing
    assert plan_audio(10_000, load) == AUDIO_PLANS[-1]
    assert fec_percent(0.0) == 0 and fec_percent(0.031) == 4 and fec_percent(0.9) == 30


def test_downstream_requests_merge_lowest_rate_longest_frames_most_fec() -> None:
    r = MediaRelay(source="up")
    for link in ("a", "b"):
        r.add_link(link, 0.0, simulcast=True)
    r.receive("a", C.encode(C.AudioRateRequest(16, 40, 0)), 0.0)
    r.receive("b", C.encode(C.AudioRateRequest(255, 20, 7)), 0.1)
    out = [C.parse(o.data) for o in r.tick(0.6) if o.data[0] == C.KIND_AUDIO_RATE_REQUEST]
    assert out == [C.AudioRateRequest(16, 40, 7)]
    st_a = r.link_stats("a", 0.6)
    assert (st_a.audio_request_kbps, st_a.audio_frame_ms, st_a.audio_fec_percent) == (16, 40, 0)
    st_b = r.link_stats("b", 0.6)
    assert (st_b.audio_request_kbps, st_b.audio_frame_ms, st_b.audio_fec_percent) == (None, None, 7)
    assert AudioWant(16, 40, 0).merge(AudioWant(255, 20, 7)) == AudioWant(16, 40, 7)


def test_lossy_link_asks_for_fec_and_repeats_audio() -> None:
    r, src = video_relay()
    t = 0.0
    sent: list = []
    while t < 4.0:
        advance(r, src, t, t + 0.25)
        t += 0.25
        r.link_feedback("dg", t, 0.05, 0.01, 0.01, 0.2)
    for o in r.tick(t + 0.6):
        sent.append(C.parse(o.data))
    assert r.link_stats("dg", t).audio_fec_percent >= 3
    assert r.audio_redundancy("dg", t) >= 1
    assert r.link_stats("dg", t).layer == "high"  # random loss alone does not shed video
    r2 = MediaRelay(source="src")
    r2.add_link("tcp", 0.0, simulcast=True)  # no reports: no redundancy, no FEC
    assert r2.audio_redundancy("tcp", 1.0) == 0 and r2.link_stats("tcp", 1.0).audio_fec_percent == 0


def test_random_loss_keeps_a_second_audio_copy_where_it_fits_and_queue_drops_do_not() -> None:
    """Profile B: 1 % random loss, ~12 datagrams per report, so most reports show none and the
    smoothed loss stays under REDUNDANCY_LOSS[1]; two losses in a row then lost a frame under one
    copy (the weak-link bench, 6 runs of 7). A report with loss and no queue keeps two copies for
    SECOND_COPY_AFTER_LOSS_S; loss that comes with a queue (a full modem's drops) does not."""
    r, src = video_relay()
    t = 0.0
    depths = []
    for i in range(120):  # 30 s of reports every 0.25 s; one in 8 sees one datagram lost in 12
        advance(r, src, t, t + 0.25)
        t += 0.25
        r.link_feedback("dg", t, 1 / 12 if i % 8 == 0 else 0.0, 0.005, 0.01, 0.09)
        if t >= 3.0:
            depths.append(r.audio_redundancy("dg", t))
    assert r.link_stats("dg", t).audio_fec_percent < 100  # sanity: the link lives
    assert min(depths) == 2, depths  # without the memory: 1 most of the time (smoothed loss ~1-1.6 %)
    # loss only with a high queueing delay: no second copy from it
    r2, src2 = video_relay()
    t = 0.0
    for i in range(120):
        advance(r2, src2, t, t + 0.25)
        t += 0.25
        r2.link_feedback("dg", t, 1 / 12 if i % 8 == 0 else 0.0, 0.005, 0.3 if i % 8 == 0 else 0.01, 0.09)
    assert r2.audio_redundancy("dg", t) <= 1
    assert r2._links["dg"].feedback.last_random_loss_at == -math.inf  # every loss came with a queue


def test_link_feedback_for_unknown_link_or_bad_values_is_refused_quietly() -> None:
    r, _ = video_relay()
    r.link_feedback("nope", 1.0, 0.0, 0.0, 0.0, 0.1)
    r.link_feedback("dg", 1.0, math.nan, 0.0, 0.0, 0.1)
    r.link_feedback("dg", math.inf, 0.0, 0.0, 0.0, 0.1)
    assert r.feedback_refused == 2
    assert not r.link_stats("dg", 1.0).feedback


def test_reports_that_stop_leave_the_link_to_the_queue_rules() -> None:
    r, src = video_relay()
    advance(r, src, 0.0, 1.0)
    r.link_feedback("dg", 1.0, 0.0, 0.0, 0.0, 0.1)
    assert r.link_stats("dg", 1.5).feedback
    assert not r.link_stats("dg", 4.0).feedback


# ---- the profiles on an emulated datagram path -------------------------------------------

def profile(rate_bps, base_s, jitter_s, loss, queue_s, *, cap_at, t1, seed=1, start_level=0):
    """Source -> relay -> datagram path with reports; the path is `rate_bps` from `cap_at` on."""
    r, src = MediaRelay(source="src"), SourceF()
    for m in src.configs():
        r.receive("src", m, 0.0)
    r.add_link("d", 0.0, simulcast=True, start_level=start_level)
    r.set_link_framing("d", DGRAM_FRAMING_BYTES)
    src.force_key.update({0, 1})
    path = Path(100e6 if cap_at > 0 else rate_bps, base_s, jitter_s, loss, queue_s, seed=seed)
    levels: list[tuple[float, str]] = []

    def step(t: float) -> None:
        if round(t * 1000) % 100 == 0:
            levels.append((t, r.link_stats("d", t).layer))
    if cap_at > 0:
        run(r, src, "d", path, 0.0, cap_at, on_step=step)
        path.rate_bps = rate_bps
    run(r, src, "d", path, cap_at, t1, on_step=step)
    return r, src, path, levels


def test_profile_c_80ms_3pct_loss_1mbit_keeps_video_and_hears_audio_in_time() -> None:
    r, src, path, levels = profile(1e6, 0.08, 0.03, 0.03, 0.5, cap_at=0.0, t1=40.0)
    d = audio_delays(src, path, 5.0, 39.0)
    assert share_within(d, 0.150) >= 0.99, share_within(d, 0.150)
    assert sum(1 for _, x in d if x is None) <= 0.01 * len(d)
    later = [layer for t, layer in levels if t >= 5.0]
    assert sum(layer != "audio" for layer in later) >= 0.9 * len(later)  # video kept (it fits)
    # 3 % loss on a link with room: two copies (one loses p^2 ~ 0.09 %, as many as the UDP baseline)
    assert r.link_stats("d", 39.0).audio_fec_percent >= 1 and r.audio_redundancy("d", 39.0) == 2
    heard = sorted(seq for seq, at, _ in src.emitted if 5.0 <= at < 39.0
                   and seq in {s for s in __import__("media_dgram_sim").audio_heard(path)})
    gaps = [(b - a) * 0.02 for a, b in zip(heard, heard[1:])]
    assert max(gaps) <= 0.2  # no gap > 200 ms


def test_profile_d_150ms_5pct_loss_256kbit_hears_audio_in_time() -> None:
    r, src, path, levels = profile(256e3, 0.15, 0.05, 0.05, 0.5, cap_at=0.0, t1=40.0)
    d = audio_delays(src, path, 5.0, 39.0)
    assert share_within(d, 0.300) >= 0.98, share_within(d, 0.300)


def test_profile_e_32kbit_sheds_video_within_a_second_and_audio_recovers() -> None:
    cap_at = 5.0
    r, src, path, levels = profile(32e3, 0.1, 0.0, 0.0, 1.5, cap_at=cap_at, t1=45.0)
    audio_only_at = next(t for t, layer in levels if t >= cap_at and layer == "audio")
    assert audio_only_at - cap_at <= 1.0
    assert all(layer == "audio" for t, layer in levels if t >= audio_only_at)
    # the source was asked for a small stream: 12 kbit/s in 60 ms frames fits 32 kbit/s with the headers
    last = src.requests[-1][1]
    assert (last.kbps, last.frame_ms) in ((12, 60), (12, 40), (16, 40))
    # once the 1.5 s of video queued at the cap has drained (dropped at the relay, not sent late):
    d = audio_delays(src, path, cap_at + 5.0, 44.0)
    delays = sorted(x for _, x in d if x is not None)
    assert len(delays) >= 0.97 * len(d)
    assert delays[int(0.95 * len(delays))] <= 0.4
    # and over the whole run from the cap, the transient included
    whole = audio_delays(src, path, cap_at, 44.0)
    assert sum(1 for _, x in whole if x is not None) >= 0.9 * len(whole)
    assert r._links["d"].dropped_audio > 0  # late audio was dropped at the relay during the transient


def test_redundant_audio_copies_are_relayed_once_in_order() -> None:
    """A datagram receiver feeds each packet's redundant copies (oldest first) and then its chunk:
    a copy that repairs a loss is relayed in order, one already relayed is dropped."""
    r = MediaRelay(source="up")
    r.add_link("down", 0.0)

    def a(seq: int) -> bytes:
        return C.encode(C.Chunk(0, 0, 0, True, 0, seq, seq * 20_000, 20_000, bytes([seq])))
    # packets carry [previous, current]; the packet with chunk 2 was lost, 3's copy of 2 repairs it
    for packet in ([a(0)], [a(0), a(1)], [a(2), a(3)], [a(3), a(4)]):
        for chunk in packet:
            r.receive("up", chunk, 0.0)
    got = []
    while (d := r.pop("down", 0.0)) is not None:
        got.append(C.parse(d).seq)
    assert got == [0, 1, 2, 3, 4] and r.audio_repeats == 2
    r.set_source("up")  # a new presenter starts again at seq 0: not a repeat
    r.receive("up", C.encode(C.Chunk(0, 0, 0, True, 0, 0, 5_000_000, 20_000, b"n")), 1.0)
    assert C.parse(r.pop("down", 1.0)).timestamp_us == 5_000_000


def test_profile_e_from_the_start_a_datagram_link_added_at_audio_only() -> None:
    """A datagram link added at the audio-only level (as docs/protocol/media.md advises) on a
    32 kbit/s path: p95 <= 400 ms above the base delay, >= 97 % of audio delivered, the whole run."""
    r, src, path, levels = profile(32e3, 0.1, 0.0, 0.0, 1.5, cap_at=0.0, t1=60.0, start_level=AUDIO_LEVEL)
    d = audio_delays(src, path, 0.0, 59.0)
    delays = sorted(x for _, x in d if x is not None)
    assert len(delays) >= 0.97 * len(d)
    assert sorted(99.0 if x is None else x for _, x in d)[int(0.95 * len(d))] <= 0.4
    assert all(layer == "audio" for _, layer in levels)  # no video ever fitted


def test_a_datagram_link_added_at_audio_only_climbs_fast_where_video_fits() -> None:
    """Without an estimate a link waits YOUNG_PROBE_AFTER_S (2 s) of media, then one probe that
    reports saw clean brings the video."""
    r, src, path, levels = profile(1e6, 0.08, 0.03, 0.03, 0.5, cap_at=0.0, t1=10.0, start_level=AUDIO_LEVEL)
    assert next(t for t, layer in levels if layer != "audio") <= 4.0


def test_a_young_datagram_link_climbs_only_on_reports_not_on_what_it_sent() -> None:
    """UDP takes whatever the relay sends, so a probe's send rate says nothing of the path: on a
    96 kbit/s path (audio fits, the low layer does not) with a 1.5 s modem queue, a link added at
    audio-only never climbs to video, and its audio never waits behind a modem queue full of
    video (found on the packet emulator: a 'passed' 358 kbit/s probe on 32 kbit/s put video into
    a full 1.5 s modem queue for 7 s). Its probes still queue some (p95 ~0.45 s here)."""
    r, src, path, levels = profile(96e3, 0.1, 0.0, 0.0, 1.5, cap_at=0.0, t1=30.0, start_level=AUDIO_LEVEL)
    assert all(layer == "audio" for _, layer in levels), [x for x in levels if x[1] != "audio"][:5]
    d = audio_delays(src, path, 10.0, 29.0)
    delays = sorted(99.0 if x is None else x for _, x in d)
    assert delays[int(0.95 * len(delays))] <= 0.6, delays[int(0.95 * len(delays))]


def test_an_estimate_pinned_by_an_app_limited_sender_is_not_taken_for_the_path() -> None:
    """Audio alone never shows a path's room: after one false overuse the estimate grows only to
    1.5x what the audio sends. Pinned there, clean for APP_LIMITED_CLEAN_S, it is app-limited (the
    redundancy rule then lets copies probe the path); a new overuse makes it binding again."""
    from meshmeet.media.feedback import APP_LIMITED_CLEAN_S, LinkFeedback

    fb, now, sent = LinkFeedback(), 0.0, 22_000.0
    for _ in range(3):  # queueing delay high and rising: confirmed overuse, the estimate becomes known
        now += 0.25
        assert fb.report(now, 0.0, 0.005, 0.1 + now / 10, 0.1, sent)
    assert fb.estimate_bps is not None and not fb.app_limited(now)
    clean_from = now
    while now - clean_from < APP_LIMITED_CLEAN_S + 5:
        now += 0.25
        fb.report(now, 0.0, 0.005, 0.001, 0.1, sent)
        if now - clean_from < APP_LIMITED_CLEAN_S - 0.5:
            assert not fb.app_limited(now)
    assert fb.app_limited(now) and fb.estimate_bps <= 1.5 * sent
    for _ in range(3):
        now += 0.25
        fb.report(now, 0.0, 0.005, 0.3 + now / 10, 0.1, sent)
    assert not fb.app_limited(now)


def test_a_young_link_starts_audio_only_on_the_paths_round_trip_not_a_loaded_loops() -> None:
    """A datagram link whose path is beyond a LAN starts at audio-only before its first audio. The
    path's round trip is the kernel's TCP figure where the driver gives one: on a loaded machine the
    reports' own RTT on loopback is 100 ms and more (how late the nodes' loops ran), and a LAN link
    judged on it started audio-only (seen in tests/test_media_nodes_browser.py under load)."""
    for path_rtt_s, layer in ((20e-6, "high"), (0.2, "audio"), (None, "audio")):
        r, src = MediaRelay(source="src"), SourceF()
        for m in src.configs():
            r.receive("src", m, 0.0)
        r.add_link("d", 0.0, simulcast=True)
        r.set_link_framing("d", DGRAM_FRAMING_BYTES)
        r.set_path_rtt("d", path_rtt_s)
        src.force_key.update({0, 1})
        for n in range(1, 31):  # 1.5 s of video (no audio yet), popped as sent; a report each 0.25 s
            t = n * 0.05
            for m in src.video():
                r.receive("src", m, t)
            if n % 5 == 0:  # each report with a 150 ms round trip (a loaded machine's loopback)
                r.link_feedback("d", t, 0.0, 0.001, 0.0, 0.15)
            r.tick(t)
            while r.pop("d", t) is not None:
                pass
        assert r.link_stats("d", 1.5).layer == layer, (path_rtt_s, r.link_stats("d", 1.5).layer)


def test_a_young_lan_link_repeats_audio_from_its_first_frame_a_wide_one_waits() -> None:
    """Profile B (80 ms round trip, 1 % loss) lost 4 of 3,000 frames in the 3 s its young link waited
    before the first audio copy; the UDP + redundancy baseline lost none. A young link on a path under
    YOUNG_LAN_RTT_S (it starts with video) repeats from the first frame; a wider one (it may be a
    32 kbit/s modem) waits for loss or for REDUNDANCY_KNOWN_AFTER_S of audio."""
    for path_rtt_s, first_depth in ((0.08, 1), (0.2, 0)):
        r, src = MediaRelay(source="src"), SourceF()
        for m in src.configs():
            r.receive("src", m, 0.0)
        r.add_link("d", 0.0, simulcast=True)
        r.set_link_framing("d", DGRAM_FRAMING_BYTES)
        r.set_path_rtt("d", path_rtt_s)
        r.link_feedback("d", 0.25, 0.0, 0.001, 0.0, path_rtt_s)  # a keepalive report: no loss seen
        src.t = 0.3
        r.receive("src", src.audio_tick(), 0.3)
        while r.pop("d", 0.3) is not None:
            pass
        r.link_feedback("d", 0.5, 0.0, 0.001, 0.0, path_rtt_s)
        assert r.audio_redundancy("d", 0.5) == first_depth, path_rtt_s


def test_the_source_link_asks_the_source_for_nothing() -> None:
    """A hall's link to its parent (where the media comes from) is a young datagram link at the
    audio-only level (nothing is sent down it): it must not ask the source for 40 ms frames or FEC
    for everyone (seen on profile C: every hall got 40 ms frames with video flowing)."""
    r, src = MediaRelay(source="up"), SourceF()
    for m in src.configs():
        r.receive("up", m, 0.0)
    r.add_link("up", 0.0, simulcast=True, start_level=AUDIO_LEVEL)
    r.add_link("page", 0.0)
    asked = []
    for n in range(1, 200):  # 4 s: lossy reports about the up direction, audio flowing down
        t = n * 0.02
        src.t = t
        if n % 12 == 0:
            r.link_feedback("up", t, 0.05, 0.01, 0.0, 0.2)
        asked += [C.parse(o.data) for o in r.receive("up", src.audio_tick(), t) + r.tick(t)
                  if C.parse(o.data).__class__ is C.AudioRateRequest]
        while r.pop("page", t) is not None:
            pass
    assert asked == [], asked[:3]


def test_audio_copies_probing_an_app_limited_path_back_off_when_it_queues() -> None:
    """Copies on an app-limited estimate probe the path's room. On profile E (32 kbit/s) each probe
    filled the modem queue (~250 ms of audio delay) and the next came ~12 s later, for good; now
    each failed probe doubles the clean time the next one waits for, and a clean one resets it."""
    from meshmeet.media.feedback import APP_LIMITED_CLEAN_S, LinkFeedback
    from meshmeet.media.relay_feedback import COPY_PROBE_PASS_S, COPY_PROBE_WAIT_MAX_S, FeedbackRules
    from meshmeet.media.relay_link import RelayLink

    fb, lk, now, sent = LinkFeedback(), RelayLink("e", True, AUDIO_LEVEL), 0.0, 22_000.0

    def congest() -> None:
        nonlocal now
        for _ in range(3):  # queueing delay high and rising: overuse
            now += 0.25
            fb.report(now, 0.0, 0.005, 0.3 + now / 100, 0.1, sent)
            FeedbackRules._copy_probe(lk, fb, now)

    def clean_until_copies(limit_s: float) -> float | None:
        """Clean reports until the copies start; how long that took (None: not within limit_s)."""
        nonlocal now
        start = now
        while now - start < limit_s:
            now += 0.25
            fb.report(now, 0.0, 0.005, 0.001, 0.1, sent)
            if FeedbackRules._copy_probe(lk, fb, now):
                return now - start
        return None

    congest()
    waits = [clean_until_copies(400)]
    for _ in range(5):  # each probe makes the path queue at once
        congest()
        waits.append(clean_until_copies(400))
    assert all(w is not None for w in waits), waits
    assert waits[0] >= APP_LIMITED_CLEAN_S and waits[0] < 2 * APP_LIMITED_CLEAN_S, waits
    for a, b in zip(waits[1:], waits[2:]):
        assert b >= min(2 * a, COPY_PROBE_WAIT_MAX_S) - 1, f"each failed probe doubles the wait: {waits}"
    assert waits[-1] >= 8 * APP_LIMITED_CLEAN_S, waits
    # a probe that stays clean for COPY_PROBE_PASS_S: the path carries the copies, the wait resets
    while now - lk.copy_probe_at < COPY_PROBE_PASS_S + 0.5:
        now += 0.25
        fb.report(now, 0.0, 0.005, 0.001, 0.1, sent)
        assert FeedbackRules._copy_probe(lk, fb, now)
    assert lk.copy_probe_wait_s == APP_LIMITED_CLEAN_S
