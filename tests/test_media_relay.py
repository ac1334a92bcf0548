"""Relay core: priorities, the ladder under a rate cap, keyframe rules, merged requests, hostile bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from media_sim import Source, run
from meshmeet.media import chunk as C
from meshmeet.media.keyframes import KeyframeRequester
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


def check_decodable(msgs) -> None:
    """Every video layer a link receives starts at a keyframe and resumes only at one."""
    started: dict[int, bool] = {}
    last_layer = None
    for _, c in kinds(msgs):
        if c.track != C.TRACK_VIDEO:
            continue
        if last_layer is not None and c.layer != last_layer:
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


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["up", "a", "b"]), st.binary(max_size=40), st.floats(0, 0.5)), max_size=40))
def test_hostile_input_only_raises_media_format_error(events) -> None:
    r = MediaRelay(source="up")
    r.add_link("a", 0.0)
    r.add_link("b", 0.0, simulcast=True)
    t = 0.0
    for link, data, dt in events:
        t += dt
        try:
            r.receive(link, bytes([C.KIND_CHUNK]) + data if data[:1] == b"\x00" else data, t)
        except C.MediaFormatError:
            pass
        r.tick(t)
        for lk in ("a", "b"):
            while (d := r.pop(lk, t)) is not None:
                C.parse(d)
