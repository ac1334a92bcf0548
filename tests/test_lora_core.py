"""The sans-IO LoRa core: airtime, budget, frames, replay, authority, priorities, flood + acks."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from meshmeet.lora.airtime import WINDOW_S, AirtimeBudget, LoraParams, time_on_air_s
from meshmeet.lora.events import Acked, Delivered, GaveUp
from meshmeet.lora.frames import (MAX_OVERHEAD_BYTES, Frame, FrameError, FrameKeys, decode_frame,
                                  encode_frame)
from meshmeet.lora.messages import (BROADCAST, Alert, Attendance, Beacon, Control, ControlAction,
                                    Digest, MessageError, Tally, decode_message)
from meshmeet.membership.identity import verify

from test_lora_helpers import KEY, make_cores, run_sim

KEYS = FrameKeys.derive(KEY)


def test_airtime_matches_reference_figures():
    # design brief: ~72 B frame, SF7/250 71 ms, SF9/250 232 ms, SF11/250 805 ms (16-symbol preamble)
    assert time_on_air_s(72, LoraParams(sf=7, bw_hz=250_000)) == pytest.approx(0.0708, abs=5e-4)
    assert time_on_air_s(72, LoraParams(sf=9, bw_hz=250_000)) == pytest.approx(0.2319, abs=5e-4)
    assert time_on_air_s(72, LoraParams(sf=11, bw_hz=250_000)) == pytest.approx(0.8049, abs=5e-4)
    # LDRO switches on for SF11/125 kHz (16.4 ms symbols) and costs airtime
    p = LoraParams(sf=11, bw_hz=125_000)
    assert p.low_data_rate and time_on_air_s(50, p) > time_on_air_s(50, LoraParams(sf=11, bw_hz=125_000, ldro=False))


def test_overhead_is_at_most_16_bytes():
    f = Frame(1, 6, 7, 99, b"x" * 50, (0, 3))
    assert len(encode_frame(f, KEYS)) - 50 == MAX_OVERHEAD_BYTES <= 16
    assert len(encode_frame(Frame(1, 6, 7, 99, b"x" * 50), KEYS)) - 50 == 14


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 400), st.floats(0.001, 5.0)), max_size=80), st.floats(1.0, 40.0))
def test_budget_never_exceeded(pattern, budget_s):
    b = AirtimeBudget(budget_s)
    now, sent = 0.0, []
    for dt, air in pattern:
        now += dt
        if b.can_send(air, now):
            b.record(air, now)
            sent.append((now, air))
        else:
            with pytest.raises(ValueError):
                b.record(air, now)
            fit = b.earliest_fit(air, now)
            assert fit is None or (fit > now and b.can_send(air, fit))
    for t, _ in sent:
        assert sum(a for s, a in sent if t - WINDOW_S < s <= t) <= budget_s + 1e-6


kinds = st.sampled_from(["alert", "control", "tally", "beacon", "attendance"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0, 120), kinds, st.integers(0, 400)), min_size=1, max_size=40))
def test_core_never_transmits_past_budget(pattern):
    cores, _ = make_cores([1, 2], budget_s=3.0, params=LoraParams(sf=9, bw_hz=125_000))
    core = cores[1]
    now = 0.0
    sent = []
    for dt, kind, size in pattern:
        end = now + dt
        while True:  # drive the core the way the link loop does
            data = core.next_transmit(now)
            if data:
                sent.append((now, core.config.frame_airtime_s(len(data))))
                continue
            core.handle_timers(now)
            nxt = core.next_deadline(now)
            if nxt is None or nxt > end:
                break
            now = max(nxt, now)
        now = end
        msg = {"alert": Alert("x" * size, 1), "control": Control(1, ControlAction.VOTE_OPEN, 3),
               "tally": Tally(1, 2, size, 1, 0), "beacon": Beacon(1), "attendance": Attendance(1, size, 500)}[kind]
        core.send(msg, now, dest=2 if kind in ("tally", "attendance") else BROADCAST)
    for t, _ in sent:
        assert sum(a for s, a in sent if t - WINDOW_S < s <= t) <= 3.0 + 1e-6
    report = core.airtime_report(now)
    assert report.used_s <= 3.0 + 1e-6
    assert sum(report.queued.values()) == len(core._queue)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 15), st.integers(0, 7), st.integers(0, 0xFFFF), st.integers(0, (1 << 24) - 1),
       st.binary(max_size=240), st.one_of(st.none(), st.tuples(st.integers(0, 15), st.integers(0, 15))))
def test_frames_round_trip(kind, hops, src, ctr, payload, frag):
    if frag is not None and frag[0] > frag[1]:
        frag = (frag[1], frag[0])
    f = Frame(kind, hops, src, ctr, payload, frag)
    assert decode_frame(encode_frame(f, KEYS), KEYS) == f


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_give_frame_error(data):
    with pytest.raises(FrameError):
        decode_frame(data, KEYS)


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=100), st.data())
def test_any_bit_flip_is_rejected(payload, data):
    wire = bytearray(encode_frame(Frame(3, 5, 9, 1234, payload), KEYS))
    i = data.draw(st.integers(0, len(wire) - 1))
    wire[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(FrameError):
        decode_frame(bytes(wire), KEYS)


def test_other_commune_key_is_rejected():
    wire = encode_frame(Frame(1, 1, 1, 1, b"hi"), FrameKeys.derive(b"\x01" * 32))
    with pytest.raises(FrameError):
        decode_frame(wire, KEYS)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 20), st.binary(max_size=200))
def test_hostile_plaintext_gives_message_error(kind, plaintext):
    with pytest.raises(MessageError):
        decode_message(kind, plaintext, source=1, first_counter=0, public_key_of={}.get, verify=verify)


def _alert_frames(cores, now=0.0, text="Bão số 3"):
    mid = cores[1].send(Alert(text, 1_700_000_000), now)
    frames = []
    while (d := cores[1].next_transmit(now + 10 * len(frames))) is not None:
        frames.append(d)
    return mid, frames


def test_replayed_frame_is_dropped_and_delivered_once():
    cores, _ = make_cores([1, 2])
    _, frames = _alert_frames(cores)
    first = cores[2].receive(frames[0], 1.0)
    assert [type(e) for e in first] == [Delivered]
    assert cores[2].receive(frames[0], 2.0) == []
    assert cores[2].stats["duplicate"] == 1


def test_forged_and_unauthorised_alerts_are_dropped():
    cores, _ = make_cores([1, 2, 3])
    # node 3 is on the roster (has the commune key) but is not an authority
    cores[3].send(Alert("giả mạo", 1), 0.0)
    forged = cores[3].next_transmit(0.0)
    assert cores[2].receive(forged, 1.0) == []
    assert cores[2].stats["unauthorized"] == 1
    # an outsider without the key: the tag fails
    outsider = encode_frame(Frame(1, 3, 1, 500, b"\x93\xcd\xff\xff\xc0\x92\x01\xa1x"), FrameKeys.derive(b"z" * 32))
    assert cores[2].receive(outsider, 1.0) == []
    assert cores[2].stats["forged"] == 1


def test_alert_signed_by_wrong_key_is_dropped():
    cores, kps = make_cores([1, 2])
    cores[1]._sign = kps[2].sign  # key mix-up: signature not by node 1's identity
    _, frames = _alert_frames(cores)
    assert cores[2].receive(frames[0], 1.0) == []
    assert cores[2].stats["bad_message"] == 1


def test_alerts_go_before_control_tallies_and_beacons():
    cores, _ = make_cores([1, 2], budget_s=0.1)
    c = cores[1]
    c.send(Beacon(0), 0.0)
    c.send(Tally(1, 1, 10, 2, 1), 0.0)  # broadcast, nobody asked to ack: no retries
    c.send(Control(1, ControlAction.STARTED), 0.0)
    c.send(Alert("khẩn", 5), 0.0)
    kinds = []
    now = 0.0
    while len(kinds) < 4:
        c.handle_timers(now)
        d = c.next_transmit(now)
        if d is None:
            now = c.next_deadline(now)
            continue
        kinds.append(d[0] >> 4)
    assert kinds == [1, 3, 4, 6]  # alert, control, tally, beacon
    assert now >= WINDOW_S  # the budget forced a wait of about an hour
    rep = c.airtime_report(now)
    assert rep.budget_s_per_hour == 0.1 and rep.used_s <= 0.1


def test_airtime_report_shows_queue_when_budget_is_spent():
    cores, _ = make_cores([1, 2], budget_s=0.1)
    c = cores[1]
    for _ in range(3):
        c.send(Attendance(1, 30, 40), 0.0, dest=2)
    c.send(Alert("a", 1), 0.0)
    assert c.next_transmit(0.0) is not None
    assert c.next_transmit(1.0) is None  # budget gone
    rep = c.airtime_report(1.0).as_dict()
    assert rep["queued"] == {"alert": 0, "control": 0, "tally": 3, "beacon": 0}
    assert rep["used_s"] <= 0.1


def test_long_alert_fragments_and_reassembles_out_of_order():
    cores, _ = make_cores([1, 2], mtu=60)
    text = "Thông báo khẩn: " + "nước lũ đang lên, " * 12
    mid, frames = _alert_frames(cores, text=text)
    assert len(frames) > 3
    events = []
    for f in reversed(frames):
        events += cores[2].receive(f, 1.0)
    assert events == [Delivered(1, mid, BROADCAST, Alert(text, 1_700_000_000))]


def test_chain_flood_with_loss_delivers_and_acks_come_back():
    ids = [1, 2, 3, 4, 5]
    cores, _ = make_cores(ids, params=LoraParams(sf=7, bw_hz=250_000), ack_timeout_s=8.0)
    nbrs = {i: [j for j in (i - 1, i + 1) if j in cores] for i in ids}
    mid = cores[1].send(Alert("Họp khẩn lúc 8 giờ", 1), 0.0, ack_from=frozenset({2, 3, 4, 5}))
    cores[5].send(Attendance(7, 41, 45), 0.0, dest=1)
    ev = run_sim(cores, nbrs, until=120.0, loss=0.1, seed=3)
    assert any(isinstance(e, Delivered) and isinstance(e.message, Alert) for e in ev[5])
    assert {e.by for e in ev[1] if isinstance(e, Acked) and e.msg_id == mid} == {2, 3, 4, 5}
    assert any(isinstance(e, Delivered) and e.message == Attendance(7, 41, 45) for e in ev[1])
    assert not any(isinstance(e, GaveUp) for e in ev[1])
    for c in cores.values():
        assert c.airtime_report(120.0).used_s <= 36.0


def test_unreachable_destination_gives_up_after_retries():
    cores, _ = make_cores([1, 2], ack_timeout_s=1.0, max_retries=2)
    mid = cores[1].send(Control(1, ControlAction.VOTE_CLOSED, 4), 0.0, dest=2)
    ev = run_sim({1: cores[1]}, {1: []}, until=60.0)
    assert GaveUp(mid, frozenset({2})) in ev[1]
    assert cores[1].frames_sent == 3  # first try + 2 retries


def test_digest_round_trips_through_core():
    cores, _ = make_cores([1, 2])
    cores[2].send(Digest(42, b"\x01" * 8), 0.0)
    assert cores[1].receive(cores[2].next_transmit(0.0), 0.1)[0].message == Digest(42, b"\x01" * 8)
