"""Media datagrams (sans-IO): the documented vectors, hostile bytes, forgery, replay, redundancy, video loss, modes, stats."""

from __future__ import annotations


import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.media import chunk as C
from meshmeet.media import datagram as D
from meshmeet.media import datagram_bodies as B
from meshmeet.media.datagram_channel import (DATAGRAM, FALLBACK_S, TCP, DatagramChannel, Deliver, FeedbackArrived,
                                             KeyframeWanted, ModeChanged)
from meshmeet.media.datagram_stats import ReceiverStats, SenderView
from meshmeet.media.datagram_video import Nack, decode_nacks, encode_nacks
from conftest import doc_json_blocks

KA, KB = bytes(range(32)), bytes(range(100, 132))


def doc_vectors() -> list[dict]:
    return [v for block in doc_json_blocks("protocol/media.md", "datagram-vectors") for v in block]


def test_doc_vectors() -> None:
    vs = doc_vectors()
    assert {v["kind"] for v in vs} == {"offer", "audio-body", "video-body", "report-body", "ack-body", "nack-body",
                                       "datagram"}
    for v in vs:
        raw = bytes.fromhex(v["hex"])
        if v["kind"] == "offer":
            offer = D.Offer(v["channel"], v["port"], bytes.fromhex(v["key_hex"]))
            assert D.encode_offer(offer) == raw and D.parse_offer(raw) == offer
        elif v["kind"] == "audio-body":
            chunks = [bytes.fromhex(h) for h in v["earlier_hex"]] + [bytes.fromhex(v["primary_hex"])]
            assert B.encode_audio(chunks[-1], chunks[:-1]) == raw and B.decode_audio(raw) == chunks
        elif v["kind"] == "video-body":
            p = B.VideoPiece(v["layer"], v["frame"], v["index"], v["count"], bytes.fromhex(v["piece_hex"]))
            assert B.encode_video(p) == raw and B.decode_video(raw) == p
        elif v["kind"] == "report-body":
            r = B.Report(v["highest"], v["received"], v["jitter_us"], v["delay_trend_us"], v["echo_us"], v["hold_us"])
            assert B.encode_report(r) == raw and B.decode_report(raw) == r
        elif v["kind"] == "nack-body":
            nacks = [Nack(layer, frame, tuple(idx)) for layer, frame, idx in v["nacks"]]
            assert encode_nacks(nacks) == raw and decode_nacks(raw) == nacks
        elif v["kind"] == "ack-body":
            a = B.ProbeAck(v["echo_us"], v["hold_us"])
            assert B.encode_ack(a) == raw and B.decode_ack(raw) == a
        else:
            key, body = bytes.fromhex(v["key_hex"]), bytes.fromhex(v["body_hex"])
            sealed = D.Sealer(key, v["channel"], v["counter"]).seal(v["type"], v["send_time_us"], body)
            assert sealed == raw
            # independently, from the text of the spec
            header = v["channel"].to_bytes(2, "big") + v["counter"].to_bytes(4, "big")
            inner = bytes([v["type"]]) + v["send_time_us"].to_bytes(4, "big") + body
            assert header + ChaCha20Poly1305(key).encrypt(bytes(8) + v["counter"].to_bytes(4, "big"), inner, header) == raw
            opened = D.Opener(key).open(raw)
            assert (opened.counter, opened.type, opened.send_time_us, opened.body) == (
                v["counter"], v["type"], v["send_time_us"], body)


def test_overhead_is_27_bytes() -> None:
    assert len(D.Sealer(KA, 1).seal(D.T_MEDIA, 0, b"x" * 10)) == 10 + D.OVERHEAD_BYTES == 37


@given(st.sampled_from(sorted(D.TYPES)), st.integers(0, 2**32 - 1), st.binary(max_size=D.MAX_BODY_BYTES),
       st.integers(0, 2**32 - 1))
def test_seal_open_round_trip(t: int, time_us: int, body: bytes, counter: int) -> None:
    o = D.Opener(KA).open(D.Sealer(KA, 7, counter).seal(t, time_us, body))
    assert (o.counter, o.type, o.send_time_us, o.body) == (counter, t, time_us, body)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_hostile_bytes_only_give_datagram_error(data: bytes) -> None:
    for fn in (D.Opener(KA).open, D.parse_offer, D.peek_channel, B.decode_audio, B.decode_video, B.decode_report,
               B.decode_ack, decode_nacks):
        try:
            fn(data)
        except D.DatagramError:
            pass
    ch = DatagramChannel(tx_key=KA, tx_channel=1, rx_key=KB, now=0.0)
    with pytest.raises(D.DatagramError):
        ch.receive(data, 0.0)  # without the key nothing passes


@settings(max_examples=300)
@given(st.sampled_from(sorted(D.TYPES)), st.binary(max_size=120))
def test_authentic_hostile_bodies_only_give_datagram_error(t: int, body: bytes) -> None:
    """A peer with the key may still send nonsense: the channel drops it with DatagramError only."""
    ch = DatagramChannel(tx_key=KA, tx_channel=1, rx_key=KB, now=0.0)
    try:
        ch.receive(D.Sealer(KB, 1).seal(t, 5, body), 0.1)
    except D.DatagramError:
        pass


@settings(max_examples=200)
@given(st.binary(min_size=0, max_size=60), st.data())
def test_any_altered_byte_is_refused(body: bytes, data) -> None:
    dg = D.Sealer(KA, 3, 10).seal(D.T_MEDIA, 99, body)
    i = data.draw(st.integers(0, len(dg) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = dg[:i] + bytes([dg[i] ^ (1 << bit)]) + dg[i + 1:]
    opener = D.Opener(KA)
    with pytest.raises(D.DatagramError) as e:
        opener.open(bad)
    assert e.value.reason == "auth"  # the channel id is authenticated too (aad)
    assert opener.open(dg).body == body  # and the forgery did not move the window


def test_wrong_key_and_replay() -> None:
    dg = D.Sealer(KA, 3).seal(D.T_PROBE, 1, b"")
    with pytest.raises(D.DatagramError, match="auth"):
        D.Opener(KB).open(dg)
    o = D.Opener(KA)
    o.open(dg)
    with pytest.raises(D.DatagramError) as e:
        o.open(dg)
    assert e.value.reason == "replay"


def test_counter_exhaustion_is_an_error_not_a_nonce_reuse() -> None:
    s = D.Sealer(KA, 3, D.MAX_COUNTER)
    s.seal(D.T_PROBE, 0, b"")
    with pytest.raises(D.DatagramError) as e:
        s.seal(D.T_PROBE, 0, b"")
    assert e.value.reason == "exhausted"


@settings(max_examples=300)
@given(st.lists(st.integers(0, 3000), max_size=300))
def test_replay_window_matches_a_model(counters: list[int]) -> None:
    w = D.ReplayWindow()
    seen: set[int] = set()
    top = -1
    for c in counters:
        expect = c not in seen and c > top - w.size
        assert w.check(c) == expect
        if expect:
            w.accept(c)
            seen.add(c)
            top = max(top, c)


@settings(max_examples=100)
@given(st.permutations(list(range(64))))
def test_reordered_datagrams_within_the_window_each_open_once(order: list[int]) -> None:
    s = D.Sealer(KA, 3)
    dgs = [s.seal(D.T_MEDIA, i, bytes([C.KIND_PADDING])) for i in range(64)]
    o = D.Opener(KA)
    assert [o.open(dgs[i]).counter for i in order] == order
    for i in order[:5]:
        with pytest.raises(D.DatagramError):
            o.open(dgs[i])


def test_offer_refuses_bad_bytes() -> None:
    good = D.encode_offer(D.Offer(5, 7400, KA))
    for bad in (good[:-1], good + b"\0", b"\x02" + good[1:], good[:3] + b"\0\0" + good[5:]):
        with pytest.raises(D.DatagramError):
            D.parse_offer(bad)


# ----- the channel ---------------------------------------------------------------------------

def audio(seq: int, payload: bytes | None = None, gen: int = 1) -> bytes:
    return C.encode(C.Chunk(C.TRACK_AUDIO, 0, 0, True, gen, seq, 1_000_000 + seq * 20_000, 20_000,
                            payload if payload is not None else bytes([seq % 251]) * 30))


def video(seq: int, key: bool, size: int, layer: int = C.LAYER_HIGH) -> bytes:
    return C.encode(C.Chunk(C.TRACK_VIDEO, layer, 0, key, 1, seq, seq * 50_000, 50_000, bytes([seq % 251]) * size))


def connected(redundancy: int = 1) -> tuple[DatagramChannel, DatagramChannel]:
    a = DatagramChannel(tx_key=KA, tx_channel=2, rx_key=KB, now=0.0, redundancy=redundancy)
    b = DatagramChannel(tx_key=KB, tx_channel=1, rx_key=KA, now=0.0, redundancy=redundancy)
    a.tick(0.0)
    for dg in a.datagrams_to_send():
        b.receive(dg, 0.0)
    for dg in b.datagrams_to_send():
        assert a.receive(dg, 0.01) == [ModeChanged(DATAGRAM)]
    return a, b


def delivered(events) -> list[bytes]:
    return [e.message for e in events if isinstance(e, Deliver)]


@settings(max_examples=200)
@given(st.integers(0, 3), st.data())
def test_redundancy_recovers_every_audio_chunk_when_losses_are_short(depth: int, data) -> None:
    """Any loss pattern with at most `depth` consecutive losses (and the last datagram arriving)
    loses no audio; each chunk is delivered once, in order."""
    n = data.draw(st.integers(1, 60))
    lost = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    lost[-1] = False
    run = 0
    for i, x in enumerate(lost):
        run = run + 1 if x else 0
        if run > depth:
            lost[i] = False
            run = 0
    a, b = connected(depth)
    chunks = [audio(s) for s in range(n)]
    got: list[bytes] = []
    for i, c in enumerate(chunks):
        assert a.send_media(c, 0.1 + i * 0.02)
        dgs = a.datagrams_to_send()
        assert len(dgs) == 1 and len(dgs[0]) <= D.MAX_DATAGRAM_BYTES
        if not lost[i]:
            got += delivered(b.receive(dgs[0], 0.11 + i * 0.02))
    assert got == chunks


def test_redundancy_is_not_carried_across_a_config_change_and_duplicates_are_dropped() -> None:
    a, b = connected(2)
    a.send_media(audio(0, gen=1), 0.1)
    a.send_media(audio(1, gen=2), 0.12)
    first, second = a.datagrams_to_send()
    assert B.decode_audio(D.Opener(KA).open(second).body) == [audio(1, gen=2)]  # gen 1 cannot ride along
    assert delivered(b.receive(first, 0.2)) == [audio(0, gen=1)]
    a.send_media(audio(2, gen=2), 0.14)
    (third,) = a.datagrams_to_send()
    assert delivered(b.receive(third, 0.2)) == [audio(1, gen=2), audio(2, gen=2)]
    assert delivered(b.receive(second, 0.21)) == []  # late, and already recovered
    assert b.counters["audio_duplicates"] == 1


def test_depth_zero_sends_bare_chunks_and_big_messages_take_the_link() -> None:
    a, b = connected(0)
    a.send_media(audio(0), 0.1)
    a.send_media(audio(1), 0.12)
    assert [len(d) for d in a.datagrams_to_send()] == [len(audio(1)) + 1 + D.OVERHEAD_BYTES] * 2
    cfg = C.encode_config(C.DecoderConfig(C.TRACK_AUDIO, 0, 1, {"codec": "opus"}))
    assert not a.send_media(cfg, 0.2)  # configs go on the reliable link...
    (copy,) = a.datagrams_to_send()  # ...and as a datagram, to arrive before the chunks that need them
    assert delivered(b.receive(copy, 0.2)) == [cfg]
    assert not a.send_media(video(1, True, 300_000), 0.2)  # more than 255 pieces
    assert a.datagrams_to_send() == []


def test_not_in_datagram_mode_everything_takes_the_link() -> None:
    a = DatagramChannel(tx_key=KA, tx_channel=2, rx_key=KB, now=0.0)
    assert not a.send_media(audio(0), 0.0)


def send_video(a: DatagramChannel, msg: bytes, now: float) -> list[bytes]:
    assert a.send_media(msg, now)
    return a.datagrams_to_send()


def test_video_in_pieces_relay_fragments_joined_back() -> None:
    from meshmeet.media.fragments import next_piece

    a, b = connected()
    key = video(0, True, 3000)
    # the relay hands over its own 500 B link fragments: they are joined back, then cut for datagrams
    rest, size, dgs = key, 0, []
    while rest:
        msg, rest, size = next_piece(rest, size)
        assert msg[0] == C.KIND_FRAGMENT
        a.send_media(msg, 0.1)
        dgs += a.datagrams_to_send()
    assert len(dgs) == 3 and all(len(d) <= D.MAX_DATAGRAM_BYTES for d in dgs)
    assert delivered(sum((b.receive(d, 0.2) for d in dgs), [])) == [key]


def test_a_lost_piece_is_asked_for_again_and_frames_stay_in_order() -> None:
    a, b = connected()
    f1, f2 = video(1, True, 2500), video(2, False, 100)
    d1, d2 = send_video(a, f1, 0.1), send_video(a, f2, 0.1)
    ev = b.receive(d1[0], 0.11) + b.receive(d1[2], 0.11) + b.receive(d2[0], 0.11)  # piece 1 of f1 lost
    assert delivered(ev) == []  # f2 waits behind the gap
    (nack,) = b.datagrams_to_send()
    assert D.Opener(KB).open(nack).type == D.T_NACK
    assert a.receive(nack, 0.12) == []
    (again,) = a.datagrams_to_send()
    assert delivered(b.receive(again, 0.13)) == [f1, f2]
    assert b.counters["video_repaired"] == 1 and a.counters["resent_pieces"] == 1
    for _ in range(5):  # a peer repeating the NACK gets the piece at most 3 times in all
        a.receive(D.Sealer(KB, 1, 1000 + _).seal(D.T_NACK, 0, D.Opener(KB).open(nack).body), 0.14)
    assert len(a.datagrams_to_send()) == 2 and a.counters["resent_pieces"] == 3


def test_an_unrepaired_loss_is_given_up_and_waits_for_a_keyframe() -> None:
    from meshmeet.media.datagram_video import NACK_BUDGET_S

    a, b = connected()
    d1 = send_video(a, video(1, False, 2500), 0.1)
    d2 = send_video(a, video(2, False, 100), 0.1)
    ev = b.receive(d1[0], 0.11) + b.receive(d1[2], 0.11) + b.receive(d2[0], 0.11)
    t = 0.11
    while t < 0.11 + NACK_BUDGET_S + 0.05:  # every NACK is lost
        t += 0.01
        ev += b.tick(t)
        b.datagrams_to_send()
    assert KeyframeWanted(C.LAYER_HIGH) in ev and delivered(ev) == []  # f2 is a delta after the loss: dropped
    assert b.counters["video_frames_lost"] == 1 and b.counters["video_dropped_for_key"] == 1
    low = video(3, False, 100, C.LAYER_LOW)
    assert delivered(b.receive(send_video(a, low, t)[0], t)) == [low]  # the other layer is not held up
    k = video(4, True, 100)
    assert delivered(b.receive(send_video(a, k, t)[0], t)) == [k]


def _exchange(a: DatagramChannel, b: DatagramChannel, t: float, drop, got: list) -> None:
    """Move datagrams both ways until none are left; `drop(direction, datagram)` loses some."""
    moved = True
    while moved:
        moved = False
        for src, dst, name in ((a, b, "ab"), (b, a, "ba")):
            for dg in src.datagrams_to_send():
                moved = True
                if not drop(name, dg):
                    got += delivered(dst.receive(dg, t)) if dst is b else [None for _ in dst.receive(dg, t)][:0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6000), st.booleans()), min_size=1, max_size=25), st.data())
def test_video_with_nack_repair_delivers_every_frame_in_order(frames: list, data) -> None:
    """Lose any first copies of video pieces (but the last frame's: a loss is seen from what comes
    after it); with NACKs and resends arriving, every frame is delivered, once, in order, byte for byte."""
    a, b = connected()
    sent, got, t = [], [], 0.1
    loss = data.draw(st.sets(st.integers(0, 200), max_size=40))
    n = 0
    for i, (size, key) in enumerate(frames):
        v = video(i, key or i == 0, size)
        sent.append(v)
        for dg in send_video(a, v, t):
            if n not in loss or i == len(frames) - 1:
                got += delivered(b.receive(dg, t))
            n += 1
        for _ in range(5):
            t += 0.01
            got += delivered(b.tick(t))
            a.tick(t)
            _exchange(a, b, t, lambda d, dg: False, got)
    for _ in range(60):
        t += 0.01
        got += delivered(b.tick(t))
        a.tick(t)
        _exchange(a, b, t, lambda d, dg: False, got)
    assert got == sent


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4000), st.booleans()), min_size=1, max_size=25), st.data())
def test_video_with_lossy_repair_delivers_intact_frames_in_order_and_never_a_delta_after_a_loss(frames, data) -> None:
    a, b = connected()
    sent, got, t = [], [], 0.1
    rnd = data.draw(st.randoms(use_true_random=False))
    lossy = lambda d, dg: rnd.random() < 0.3  # noqa: E731
    for i, (size, key) in enumerate(frames):
        v = video(i, key or i == 0, size)
        sent.append(v)
        for dg in send_video(a, v, t):
            if not lossy("ab", dg):
                got += delivered(b.receive(dg, t))
        for _ in range(5):
            t += 0.01
            got += delivered(b.tick(t))
            a.tick(t)
            _exchange(a, b, t, lossy, got)
    for _ in range(60):
        t += 0.01
        got += delivered(b.tick(t))
        a.tick(t)
        _exchange(a, b, t, lossy, got)
    idx = [sent.index(g) for g in got]  # intact: each delivered chunk is one that was sent
    assert idx == sorted(set(idx))  # in order, once
    for prev, cur in zip([-1] + idx, idx):
        if cur != prev + 1:  # something was lost before `cur`: only a keyframe may follow the gap
            assert C.peek_chunk(sent[cur]).keyframe


def test_mode_falls_back_without_acknowledgements_and_comes_back() -> None:
    a, b = connected()
    assert a.mode == DATAGRAM
    t = 0.01
    events = []
    while t < 0.01 + FALLBACK_S + 1:
        t += 0.1
        events += a.tick(t)
        a.datagrams_to_send()  # lost: nothing reaches b
    assert ModeChanged(TCP) in events and a.mode == TCP
    assert not a.send_media(audio(0), t)
    t += 0.5
    a.tick(t)
    for dg in a.datagrams_to_send():
        b.receive(dg, t)
    acks = b.datagrams_to_send()
    assert acks and a.receive(acks[0], t + 0.01) == [ModeChanged(DATAGRAM)]
    assert a.rtt_s is not None and 0 <= a.rtt_s < 0.1


def test_reports_give_loss_jitter_delay_and_rtt() -> None:
    a, b = connected(0)
    fbs = []
    t = 0.1
    for i in range(40):
        a.send_media(audio(i), t)
        for dg in a.datagrams_to_send():
            if i % 4 != 3:  # a quarter lost
                b.receive(dg, t + 0.03 + (0.002 * i if i >= 20 else 0))  # a queue builds up after 20
        b.tick(t + 0.1)
        for dg in b.datagrams_to_send():
            fbs += [e.feedback for e in a.receive(dg, t + 0.12) if isinstance(e, FeedbackArrived)]
        t += 0.02
    assert fbs
    late = fbs[-1]
    assert 0.15 < late.loss_fraction < 0.35
    assert late.delay_trend_s > 0.01  # the growing queue shows
    assert late.jitter_s > 0
    assert late.rtt_s is not None and late.rtt_s > 0
    assert 0.15 < a.recent_loss(t + 0.2) < 0.35  # status: the loss of the last 5 s
    assert a.recent_loss(t + 10) is None


def test_receiver_stats_constant_delay_has_no_jitter_or_trend() -> None:
    rx, view = ReceiverStats(), SenderView()
    for i in range(50):
        rx.arrived(i, i * 20_000, 5.0 + i * 0.02)
    fb = view.report(rx.report(6.0), 6.0)
    assert fb is not None and fb.loss_fraction == 0 and fb.jitter_s == 0 and fb.delay_trend_s == 0
    assert view.report(B.Report(10, 10, 0, 0, 0, 0), 6.1) is None  # older than the last: stale


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.floats(0, 30)), min_size=1, max_size=80))
def test_delay_trend_is_never_negative_and_report_fields_fit(arrivals: list) -> None:
    """Whatever the send times (wrapping u32 µs) and arrival times, a report encodes and its delay
    trend is a queueing delay (never below zero: the adaptation refuses negative ones)."""
    rx = ReceiverStats()
    now = 0.0
    for i, (send_us, gap) in enumerate(arrivals):
        now += gap / 10
        rx.arrived(i, send_us, now)
        if i % 7 == 6:
            r = rx.report(now)
            assert r.delay_trend_us >= 0 and r.jitter_us >= 0
            assert B.decode_report(B.encode_report(r)).highest == r.highest


def test_two_voices_interleaved_each_carry_their_own_earlier_chunk() -> None:
    """Voices 0 and 1 alternate on a link: each datagram repeats the previous chunk of its own
    voice (a copy of the other voice could not share the header), so a lost datagram of either
    voice is recovered by that voice's next one."""
    from meshmeet.media.voices import as_voice

    a, b = connected(1)
    sent, got = [], []
    for i in range(20):
        for voice in (0, 1):
            c = as_voice(audio(i), voice)
            sent.append(c)
            assert a.send_media(c, 0.1 + i * 0.02)
            (dg,) = a.datagrams_to_send()
            if i == 0 or i % 5 != 2:  # every fifth round of both voices is lost
                got += delivered(b.receive(dg, 0.11 + i * 0.02))
    assert sorted(got) == sorted(sent) and len(got) == len(sent)
    assert [c for c in got if c[1] == 0x12] == [c for c in sent if c[1] == 0x12]  # per voice, in order
