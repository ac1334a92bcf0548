"""The floor core (meshmeet/media/floor.py): grants with roster authority, source beacons, hostile bytes;
and the relay additions the node driver uses (accepted list, move_source, low-layer fallback,
confirmed downgrades)."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.media import chunk as C
from meshmeet.media import floor as F
from meshmeet.media.relay import MediaRelay

COMMUNE = bytes(16)
HQ = KeyPair.from_seed(bytes([1]) * 32)
HALL = KeyPair.from_seed(bytes([2]) * 32)
OTHER = KeyPair.from_seed(bytes([3]) * 32)


def authority(node_id: str) -> bytes | None:
    return HQ.public_key if node_id == HQ.node_id else None


def floor_at(key: KeyPair) -> F.Floor:
    return F.Floor(key.node_id, COMMUNE, authority)


def test_grant_moves_the_holder_and_is_flooded_once() -> None:
    hq, hall = floor_at(HQ), floor_at(HALL)
    root = HQ.node_id
    assert hq.root_changed(root).source_changed and not hall.root_changed(root).source_changed
    assert hq.holds(root) and hq.source_link == F.LOCAL and not hall.holds(root)
    body, upd = hq.issue(HQ, HALL.node_id, root)
    assert upd.holder_changed and hq.source_link is None
    g = F.parse(body)
    assert isinstance(g, F.FloorGrant) and g.seq == 1 and g.holder == HALL.node_id
    upd = hall.receive_grant(g, root)
    assert upd.forward and upd.holder_changed and hall.holds(root) and hall.source_link == F.LOCAL
    assert hall.receive_grant(g, root) == F.FloorUpdate()  # the same grant again: not flooded on
    body, _ = hq.issue(HQ, "", root)  # release: the root speaks again
    hall.receive_grant(F.parse(body), root)
    assert hall.holder(root) == HQ.node_id and hall.source_link is None


def test_grants_need_authority_and_a_valid_signature() -> None:
    hall = floor_at(HALL)
    forged = F.make_grant(OTHER, COMMUNE, 5, OTHER.node_id)
    try:
        hall.receive_grant(forged, HQ.node_id)
        raise AssertionError("a grant by a non-HQ node was accepted")
    except F.FloorError:
        pass
    good = F.make_grant(HQ, COMMUNE, 5, HALL.node_id)
    tampered = F.FloorGrant(good.seq, OTHER.node_id, good.granter, good.signature)
    try:
        hall.receive_grant(tampered, HQ.node_id)
        raise AssertionError("a tampered grant was accepted")
    except F.FloorError:
        pass
    other_commune = F.make_grant(HQ, bytes([9]) * 16, 6, HALL.node_id)
    try:
        hall.receive_grant(other_commune, HQ.node_id)
        raise AssertionError("a grant for another commune was accepted")
    except F.FloorError:
        pass
    assert hall.refused == 3 and hall.grant is None


def test_beacons_point_at_the_holder_and_stop_on_loops() -> None:
    hq, relay = floor_at(HQ), floor_at(HALL)
    root = HQ.node_id
    b = hq.beacon_due(root, 0.0)
    assert b is not None and hq.beacon_due(root, 0.5) is None and hq.beacon_due(root, 1.0) is not None
    beacon = F.parse(b)
    assert isinstance(beacon, F.SourceBeacon)
    upd = relay.receive_beacon("link-to-hq", beacon, root)
    assert upd.forward and upd.source_changed and relay.source_link == "link-to-hq"
    assert relay.receive_beacon("other-link", beacon, root) == F.FloorUpdate()  # came round a loop
    stale = F.SourceBeacon(beacon.seq, OTHER.node_id, 7)  # not the holder: ignored
    assert relay.receive_beacon("x", stale, root) == F.FloorUpdate() and relay.source_link == "link-to-hq"
    assert relay.link_gone("link-to-hq").source_changed and relay.source_link is None
    assert relay.beacon_due(root, 0.0) is None  # only the holder beacons


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_give_floor_errors_only(data: bytes) -> None:
    for kind in (F.KIND_FLOOR, F.KIND_SOURCE_BEACON):
        try:
            F.parse(bytes([kind]) + data)
        except F.FloorError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-2, 2**33), st.text(max_size=20), st.binary(max_size=70), st.none()), max_size=5))
def test_hostile_msgpack_fields_give_floor_errors_only(fields: list) -> None:
    for kind in (F.KIND_FLOOR, F.KIND_SOURCE_BEACON):
        data = bytes([kind]) + msgpack.packb(fields)
        try:
            m = F.parse(data)
        except F.FloorError:
            continue
        if isinstance(m, F.FloorGrant):
            try:
                floor_at(HALL).receive_grant(m, HQ.node_id)
            except F.FloorError:
                pass


def test_grant_and_beacon_round_trip_bytes() -> None:
    g = F.make_grant(HQ, COMMUNE, 3, HALL.node_id)
    assert F.parse(F.encode_grant(g)) == g
    b = F.SourceBeacon(3, HALL.node_id, 12345)
    assert F.parse(F.encode_beacon(b)) == b
    assert len(F.encode_grant(g)) < 110 and len(F.encode_beacon(b)) < 30


# ---- relay additions -------------------------------------------------------------------------
def chunk(track: int, layer: int, key: bool, seq: int) -> bytes:
    return C.encode(C.Chunk(track, layer, 0, key, 0, seq, seq * 50_000, 50_000, bytes(50)))


def test_relay_keeps_accepted_whole_messages_from_the_source_only() -> None:
    r = MediaRelay(source="up", keep_accepted=True)
    cfg = C.encode(C.DecoderConfig(0, 0, 1, {"codec": "opus"}))
    r.receive("up", cfg, 0.0)
    r.receive("up", chunk(0, 0, True, 1), 0.0)
    r.receive("elsewhere", chunk(0, 0, True, 2), 0.0)
    big = chunk(1, 0, True, 3) + bytes(3000)
    r.add_link("down", 0.0, simulcast=True)
    r.receive("up", big, 0.0)
    pieces = []
    while (m := r.pop("down", 0.0)) is not None:
        pieces.append(m)
    assert any(p[0] == C.KIND_FRAGMENT for p in pieces)
    assert r.take_accepted() == [cfg, chunk(0, 0, True, 1), big] and r.take_accepted() == []
    # the same source over another link keeps its configs for late joiners
    r.move_source("up2")
    r.add_link("late", 1.0)
    assert r.pop("late", 1.0) == cfg


def test_browser_link_falls_back_to_the_low_layer_when_high_is_shed_upstream() -> None:
    r = MediaRelay(source="up")
    r.add_link("tv", 0.0)  # a browser: one layer, high wanted
    outs = r.receive("up", chunk(1, 1, False, 1), 0.0)  # only low arrives: ask for a low keyframe
    assert [C.parse(o.data) for o in outs] == [C.KeyframeRequest(1)]
    r.receive("up", chunk(1, 1, True, 2), 0.1)
    got = [C.parse(m) for m in iter(lambda: r.pop("tv", 0.1), None)]
    assert [(m.layer, m.keyframe) for m in got if isinstance(m, C.Chunk)] == [(1, True)]


def test_a_stall_of_the_process_is_not_congestion_but_a_slow_link_is() -> None:
    r = MediaRelay(source="up")
    r.add_link("down", 0.0, simulcast=True)
    t = 0.0
    for i in range(40):  # steady, drained
        t = i * 0.05
        r.receive("up", chunk(0, 0, True, i), t)
        r.receive("up", chunk(1, 0, i % 20 == 0, i), t)
        r.receive("up", chunk(1, 1, i % 20 == 0, i), t)
        while r.pop("down", t) is not None:
            pass
        r.tick(t)
    r.receive("up", chunk(0, 0, True, 99), t)
    r.tick(t + 0.3)  # the process stalled 300 ms with a chunk queued...
    while r.pop("down", t + 0.3) is not None:  # ...then drained it at once
        pass
    r.tick(t + 0.35)
    assert r.link_stats("down", t + 0.35).layer == "high"
    r.set_rate_cap("down", 16_000)  # now the link itself is slow
    for i in range(40):
        t2 = t + 0.4 + i * 0.05
        r.receive("up", chunk(0, 0, True, 100 + i), t2)
        r.receive("up", chunk(1, 0, False, 100 + i), t2)
        while r.pop("down", t2) is not None:
            pass
        r.tick(t2)
    assert r.link_stats("down", t2).layer != "high"
