"""Relay core: priorities, the ladder under a rate cap, keyframe rules, merged requests, hostile bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from media_sim import Source, run
from meshmeet.media import chunk as C
from meshmeet.media.audio_rate import AUDIO_RATE_EXPIRE_S, AudioRateRequester
from meshmeet.media.keyframes import KeyframeRequester
from meshmeet.media.linkmodel import MESH_LINK_FRAMING_BYTES, RateCap
from meshmeet.media.relay import MediaRelay


def kinds(msgs: list[tuple[float, bytes]]):
    """Chunks as a receiver sees them: fragments reassembled (a cut chunk is dropped)."""
    buf = None
    for t, d in msgs:
        if d[0] == C.KIND_FRAGMENT:
            f = C.parse(d)
            if f.first:
                buf = bytearray()
            if buf is None:
                continue
            buf += f.piece
            if f.last:
                d, buf = bytes(buf), None
            else:
                continue
        if d[0] == C.KIND_CHUNK:
            yield t, C.parse(d)


def check_decodable(msgs, *, simulcast: bool = False) -> None:
    """Every video layer a link receives starts at a keyframe and (one layer links) switches only at one."""
    started: dict[int, bool] = {}
    last_layer = None
    for _, c in kinds(msgs):
        if c.track != C.TRACK_VIDEO:
            continue
        if last_layer is not None and c.layer != last_layer and not simulcast:
            assert c.keyframe, "layer switch not at a keyframe"
        if not started.get(c.layer):
            assert c.keyframe, "video started without a keyframe"
            started[c.layer] = True
        last_layer = c.layer


def test_fresh_subscriber_gets_configs_then_keyframe_request_then_high_video() -> None:
    r, src, got = MediaRelay(source="src"), Source(), {}
    for m in src.configs():
        r.receive("src", m, 0.0)
    run(r, src, [], 0.0, 0.5)
    out = r.add_link("hall", 0.5)
    assert [C.parse(o.data) for o in out] == [C.KeyframeRequest(C.LAYER_HIGH)]
    assert all(o.link == "src" for o in out)
    src.force_key.add(C.LAYER_HIGH)
    run(r, src, ["hall"], 0.5, 2.0, received=got)
    msgs = got["hall"]
    assert [C.parse(d) for _, d in msgs[:3]] == [C.parse(m) for m in src.configs()]  # cached configs first
    video = [c for _, c in kinds(msgs) if c.track == 1]
    assert video[0].keyframe and all(c.layer == 0 for c in video)
    assert len(video) >= 25  # 20 fps for 1.5 s, minus the wait for the keyframe
    check_decodable(msgs)
    assert r.link_stats("hall", 2.0).layer == "high"


def test_audio_is_served_before_queued_video() -> None:
    r = MediaRelay(source="src")
    r.add_link("hall", 0.0)
    key = C.encode(C.Chunk(1, 0, 0, True, 0, 0, 0, 50000, bytes(100)))
    aud = C.encode(C.Chunk(0, 0, 0, True, 0, 0, 0, 20000, bytes(10)))
    r.receive("src", key, 0.0)
    r.receive("src", aud, 0.001)
    assert r.pop("hall", 0.002) == aud
    assert r.pop("hall", 0.002) == key
    assert r.pop("hall", 0.002) is None


def test_64kbps_hall_goes_audio_only_keeps_audio_and_recovers() -> None:
    r, src, got = MediaRelay(source="src"), Source(), {}
    for m in src.configs():
        r.receive("src", m, 0.0)
    r.add_link("weak", 0.0)
    r.add_link("good", 0.0)
    src.force_key.add(0)
    run(r, src, ["weak", "good"], 0.0, 3.0, received=got)
    assert r.link_stats("weak", 3.0).layer == "high"
    r.set_rate_cap("weak", 64_000)
    layers: list[tuple[float, str]] = []
    run(r, src, ["weak", "good"], 3.0, 13.0, received=got,
        on_step=lambda t: layers.append((t, r.link_stats("weak", t).layer)))
    audio_only_at = next(t for t, layer in layers if layer == "audio")
    assert audio_only_at - 3.0 <= 1.0
    assert r.link_stats("good", 13.0).layer == "high"  # the other hall is untouched
    r.set_rate_cap("weak", None)
    run(r, src, ["weak", "good"], 13.0, 20.0, received=got,
        on_step=lambda t: layers.append((t, r.link_stats("weak", t).layer)))
    back_at = next(t for t, layer in layers if t >= 13.0 and layer != "audio")
    assert back_at - 13.0 <= 5.0
    # audio kept flowing on the weak link: no gap above 200 ms once throttled
    times = [t for t, c in kinds(got["weak"]) if c.track == 0 and t >= 3.0]
    assert max(b - a for a, b in zip(times, times[1:])) < 0.2
    seqs = [c.seq for t, c in kinds(got["weak"]) if c.track == 0]
    assert seqs == sorted(seqs)
    # video came back, decodable
    assert any(c.track == 1 and t > 13.0 for t, c in kinds(got["weak"]))
    check_decodable(got["weak"])
    check_decodable(got["good"])


def test_tree_link_carries_both_layers_and_drops_high_first() -> None:
    r, src, got = MediaRelay(source="src"), Source(), {}
    r.add_link("child", 0.0, simulcast=True)
    src.force_key.update({0, 1})
    run(r, src, ["child"], 0.0, 2.0, received=got)
    assert {c.layer for _, c in kinds(got["child"]) if c.track == 1} == {0, 1}
    # ~ enough for low + audio, not for high
    r.set_rate_cap("child", 180_000)
    got.clear()
    run(r, src, ["child"], 2.0, 8.0, received=got)
    late = [c for t, c in kinds(got["child"]) if c.track == 1 and t > 6.0]
    assert late and {c.layer for c in late} == {1}
    assert r.link_stats("child", 8.0).layer == "low"


def test_keyframe_requests_merged_and_rate_limited() -> None:
    r = MediaRelay(source="up")
    r.receive("up", C.encode(C.Chunk(0, 0, 0, True, 0, 0, 0, 20000, b"a")), 0.0)
    outs = []
    for i in range(10):
        outs += r.add_link(f"s{i}", 0.01 * i)
    assert len(outs) == 1  # ten joiners, one request upstream
    later = r.tick(0.3)
    assert later and all(C.parse(o.data) == C.KeyframeRequest(0) for o in later)
    assert len(later) == 1  # the merged ones, once
    req = C.encode(C.KeyframeRequest(1))
    assert len(r.receive("s1", req, 1.0)) == 1
    assert r.receive("s2", req, 1.1) == []
    # a keyframe answering it cancels the merged request
    r.receive("up", C.encode(C.Chunk(1, 1, 0, True, 0, 0, 0, 50000, b"k")), 1.15)
    for i in range(10):  # (the links, whose high layer is not flowing, took the low keyframe)
        while r.pop(f"s{i}", 1.2) is not None:
            pass
    assert r.tick(1.4) == []


def test_keyframe_requester_interval() -> None:
    k = KeyframeRequester(interval_s=0.25)
    assert k.request(0, 0.0) and not k.request(0, 0.1) and k.request(1, 0.1)
    assert k.next_deadline() == 0.25
    assert k.due(0.2) == [] and k.due(0.25) == [0] and k.due(1.0) == []


def test_chunks_from_a_non_source_link_are_ignored_and_not_echoed() -> None:
    r = MediaRelay(source="up")
    r.add_link("up", 0.0)
    r.add_link("down", 0.0)
    aud = C.encode(C.Chunk(0, 0, 0, True, 0, 0, 0, 20000, b"a"))
    r.receive("down", aud, 0.0)
    assert r.pop("up", 0.0) is None and r.pop("down", 0.0) is None
    r.receive("up", aud, 0.0)
    assert r.pop("down", 0.0) == aud and r.pop("up", 0.0) is None


def test_big_video_goes_out_in_pieces_with_audio_between() -> None:
    r = MediaRelay(source="src")
    r.add_link("hall", 0.0)
    big = C.Chunk(1, 0, 0, True, 0, 0, 0, 50000, bytes(range(256)) * 5)
    aud = C.encode(C.Chunk(0, 0, 0, True, 0, 0, 0, 20000, b"a"))
    r.receive("src", C.encode(big), 0.0)
    first = r.pop("hall", 0.0)
    r.receive("src", aud, 0.001)
    assert r.pop("hall", 0.001) == aud  # audio overtakes the rest of the keyframe
    rest = []
    while (d := r.pop("hall", 0.002)) is not None:
        rest.append(d)
    pieces = [C.parse(d) for d in [first, *rest]]
    assert pieces[0].first and pieces[-1].last and not any(p.last for p in pieces[:-1])
    assert len(pieces) == 3 and all(len(d) <= 502 for d in [first, *rest])
    assert C.parse(b"".join(p.piece for p in pieces)) == big
    # a downstream relay reassembles them
    down = MediaRelay(source="up")
    down.add_link("x", 0.0)
    for d in [first, *rest]:
        down.receive("up", d, 0.01)
    assert down.pop("x", 0.01)[0] == C.KIND_FRAGMENT
    assert down.receive("up", C.encode(C.Fragment(False, True, b"zz")), 0.02) == []  # orphan piece: dropped


def test_stats_shape() -> None:
    r = MediaRelay(source="up")
    r.add_link("a", 0.0)
    s = r.link_stats("a", 1.0)
    assert (s.peer, s.layer, s.queue_ms, s.estimate_kbps) == ("a", "high", 0.0, 0.0)


def test_rate_cap_counts_the_links_framing() -> None:
    """At 24 kbit/s Opus a 20 ms frame is 60 B + 14 B header + 20 B of mesh link framing: 37.6 kbit/s."""
    cap = RateCap(32_000, MESH_LINK_FRAMING_BYTES)
    t, sent = 0.0, 0
    while t < 10.0:
        if cap.can_send(t):
            cap.sent(74, t)
            sent += 1
        t += 0.001
    assert abs(sent * (74 + 20) * 8 / 10.0 - 32_000) < 500  # 34 frames/s, not the 50 the encoder makes
    r = MediaRelay(source="src")
    r.add_link("tree", 0.0, simulcast=True)
    r.add_link("browser", 0.0)
    aud = C.encode(C.Chunk(0, 0, 0, True, 0, 0, 0, 20000, bytes(60)))
    for link in ("tree", "browser"):
        r.set_rate_cap(link, 8_000)
        r.receive("src", aud, 0.0)
        r.pop(link, 0.0)
    assert r._links["tree"].cap.ready_at(0.0) > r._links["browser"].cap.ready_at(0.0)  # 20 B vs 2 B


def test_32kbps_hall_link_asks_the_source_for_less_audio_and_keeps_every_frame() -> None:
    """Issue 5: a 32 kbit/s link cannot carry 24 kbit/s Opus with its framing; the source drops to <= 16."""
    r, src, got = MediaRelay(source="src"), Source(), {}
    for m in src.configs():
        r.receive("src", m, 0.0)
    r.add_link("weak", 0.0, simulcast=True)  # a tree link into a hall: mesh link framing
    r.add_link("good", 0.0, simulcast=True)
    src.force_key.update({0, 1})
    run(r, src, ["weak", "good"], 0.0, 3.0, received=got)
    assert r.link_stats("weak", 3.0).layer == "high" and src.audio_kbps == 24
    r.set_rate_cap("weak", 32_000)
    layers: list[tuple[float, str]] = []
    step = lambda t: layers.append((t, r.link_stats("weak", t).layer))  # noqa: E731
    run(r, src, ["weak", "good"], 3.0, 15.0, received=got, on_step=step)
    audio_only_at = next(t for t, layer in layers if layer == "audio")
    asked_at, kbps = src.rate_requests[0]
    assert audio_only_at - 3.0 <= 1.0 and kbps <= 16 and asked_at - 3.0 <= 1.0, (audio_only_at, src.rate_requests)
    assert all(k <= 16 for _, k in src.rate_requests)
    # soft state: refreshed every few seconds while needed, and never more than the rate limit allows
    times = [t for t, _ in src.rate_requests]
    assert len(times) >= 4 and all(0.5 <= b - a <= 2.5 for a, b in zip(times, times[1:])), times
    assert all(layer == "audio" for t, layer in layers if t >= audio_only_at)
    assert r.link_stats("weak", 15.0).audio_request_kbps == kbps
    # every audio frame reached the weak hall, in order, none dropped; after the switch no gap above 100 ms
    audio = [(t, c) for t, c in kinds(got["weak"]) if c.track == 0]
    seqs = [c.seq for _, c in audio]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and r._links["weak"].dropped_audio == 0
    after = [t for t, c in audio if t >= asked_at + 0.3]
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert max(gaps) <= 0.1, max(gaps)
    assert any(len(c.payload) == 40 for t, c in audio if t > asked_at)  # 16 kbit/s frames arrived
    # the other hall keeps its video, and its audio is the same (smaller) stream
    assert r.link_stats("good", 15.0).layer == "high"
    assert any(c.track == 1 and t > 14.0 for t, c in kinds(got["good"]))
    check_decodable(got["good"], simulcast=True)
    # the cap lifts: video comes back, the requests stop, the source returns to its preset after its hold
    r.set_rate_cap("weak", None)
    run(r, src, ["weak", "good"], 15.0, 30.0, received=got, on_step=step)
    back_at = next(t for t, layer in layers if t >= 15.0 and layer != "audio")
    assert back_at - 15.0 <= 5.0
    assert src.rate_requests[-1][0] < back_at and src.audio_kbps == 24
    assert r.link_stats("weak", 30.0).audio_request_kbps is None
    check_decodable(got["weak"], simulcast=True)


def test_audio_rate_requests_merged_and_rate_limited() -> None:
    r = MediaRelay(source="up")
    for link in ("a", "b", "c"):
        r.add_link(link, 0.0, simulcast=True)

    def req(kbps: int) -> bytes:
        return C.encode(C.AudioRateRequest(kbps))

    def ticked(t: float) -> list:
        return [m for o in r.tick(t) if isinstance(m := C.parse(o.data), C.AudioRateRequest)]

    out = r.receive("a", req(16), 0.0)
    assert [(o.link, C.parse(o.data)) for o in out] == [("up", C.AudioRateRequest(16))]
    assert r.receive("b", req(12), 0.1) == []  # within the interval: merged, sent by the timer
    assert r.receive("up", req(6), 0.1) == []  # never from the source's side
    assert ticked(0.5) == [C.AudioRateRequest(12)]  # the minimum
    assert ticked(0.6) == [] and r.receive("a", req(16), 1.0) == []  # unchanged: no repeat before the refresh
    assert r.link_stats("a", 1.0).audio_request_kbps == 16 and r.link_stats("b", 1.0).audio_request_kbps == 12
    assert ticked(2.5) == [C.AudioRateRequest(12)]  # soft state: refreshed
    for t in (3.0, 5.0):
        r.receive("a", req(16), t)  # a keeps asking, b went quiet
    out = [m for t in (5.2, 5.4, 5.6, 5.8) for m in ticked(t)]
    assert out == [C.AudioRateRequest(16)]  # b expired after AUDIO_RATE_EXPIRE_S: back up to a's
    assert [m for t in (11.0, 11.5, 14.0) for m in ticked(t)] == []  # nobody asks: nothing goes up
    assert r.link_stats("a", 14.0).audio_request_kbps is None


def test_audio_rate_requester() -> None:
    q = AudioRateRequester(interval_s=0.5, refresh_s=2.0, expire_s=AUDIO_RATE_EXPIRE_S)
    assert q.due(0.0) is None and q.next_deadline(0.0) is None
    q.want("x", 16, 0.0)
    assert q.due(0.0) == 16 and q.due(0.1) is None
    q.want("y", 12, 0.2)
    assert q.due(0.3) is None and q.next_deadline(0.3) == 0.5 and q.due(0.5) == 12
    q.want("y", None, 0.6)
    assert q.due(1.0) == 16 and q.due(2.9) is None and q.due(3.0) == 16
    assert q.merged(0.0 + AUDIO_RATE_EXPIRE_S + 0.1) is None  # x was set at 0.0 and never refreshed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["up", "a", "b"]),
                          st.sampled_from([b"", b"\x01", b"\x06", b"\x06\x00"]), st.binary(max_size=40),
                          st.floats(0, 0.5)), max_size=40))
def test_hostile_input_only_raises_media_format_error(events) -> None:
    r = MediaRelay(source="up")
    r.add_link("a", 0.0)
    r.add_link("b", 0.0, simulcast=True)
    t = 0.0
    for link, kind, data, dt in events:
        t += dt
        data = kind + data
        try:
            r.receive(link, bytes([C.KIND_CHUNK]) + data if data[:1] == b"\x00" else data, t)
        except C.MediaFormatError:
            pass
        r.tick(t)
        for lk in ("a", "b"):
            while (d := r.pop(lk, t)) is not None:
                C.parse(d)


def test_a_repeated_config_goes_once_to_a_link_that_has_it() -> None:
    # The holder repeats its decoder configs every few seconds for nodes that reset (they come back
    # on a new link). Repeating them on a link that has them put ~1 KB every 5 s on a 32 kbit/s
    # path (a datagram copy and the TCP one): 250 ms of audio delay each time (profile E).
    r, src = MediaRelay(source="src"), Source()
    r.add_link("hall", 0.0, simulcast=True)
    for t in (0.0, 5.0, 10.0):
        for m in src.configs():
            r.receive("src", m, t)
    sent = [r.pop("hall", 10.0) for _ in range(10)]
    assert [d for d in sent if d is not None] == src.configs(), "each config once"
    changed = C.encode(C.DecoderConfig(C.TRACK_AUDIO, 0, 1, {"codec": "opus", "sampleRate": 48000, "numberOfChannels": 2}))
    r.receive("src", changed, 11.0)
    assert r.pop("hall", 11.0) == changed, "a changed config goes out"
    r.add_link("late", 12.0, simulcast=True)
    late = [r.pop("late", 12.0) for _ in range(4)]
    assert [C.parse(d) for d in late if d is not None and C.peek_kind(d) == C.KIND_CONFIG] == \
        [C.parse(m) for m in sorted([changed] + src.configs()[1:], key=lambda b: (C.parse(b).track, C.parse(b).layer))]
    r.set_source("src")  # the floor moved (here: back to the same presenter): every node forgot its configs
    for m in src.configs():
        r.receive("src", m, 13.0)
    assert [r.pop("hall", 13.0) for _ in range(3)] == src.configs(), "after a source change they go again"


def test_a_quiet_relay_ticks_once_a_second_and_is_not_quiet_once_media_or_a_queue_is_there() -> None:
    """Issue 16 (idle CPU): nothing from any link for QUIET_AFTER_S and nothing queued or probing:
    timers every QUIET_TICK_S instead of 50 ms. Any bytes from a link, or anything still queued,
    bring the 50 ms timers back."""
    from meshmeet.media.relay import QUIET_AFTER_S, QUIET_TICK_S, TICK_S

    r, src = MediaRelay(source="src"), Source()
    r.add_link("src", 0.0, simulcast=True)
    r.add_link("hall", 0.0, simulcast=True)
    r.tick(0.5)  # the new links' merged keyframe requests
    assert r.quiet(0.5) and r.next_deadline(0.5) == 0.5 + QUIET_TICK_S  # nothing ever came
    r.receive("src", src.audio(), 1.0)  # queued for the hall
    assert not r.quiet(1.0) and r.next_deadline(1.0) <= 1.0 + TICK_S
    assert not r.quiet(1.0 + QUIET_AFTER_S)  # still waiting in the hall's queue
    while r.pop("hall", 1.1) is not None:
        pass
    assert not r.quiet(1.0 + QUIET_AFTER_S - 0.01)  # media came lately
    t = 1.0 + QUIET_AFTER_S
    assert r.quiet(t) and r.next_deadline(t) == t + QUIET_TICK_S
    r.receive("hall", C.encode_keyframe_request(C.KeyframeRequest(C.LAYER_HIGH)), t + 0.5)  # any bytes from a link
    assert not r.quiet(t + 0.5) and r.next_deadline(t + 0.5) <= t + 0.5 + TICK_S
