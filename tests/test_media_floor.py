"""The floor core (meshmeet/media/floor.py): grants with roster authority, source beacons, hostile bytes;
and the relay additions the node driver uses (accepted list, move_source, low-layer fallback,
confirmed downgrades)."""

from __future__ import annotations


import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.media import chunk as C
from meshmeet.media import floor as F
from meshmeet.media.relay import MediaRelay
from conftest import doc_json_blocks

COMMUNE = bytes(16)
HQ = KeyPair.from_seed(bytes([1]) * 32)
HALL = KeyPair.from_seed(bytes([2]) * 32)
OTHER = KeyPair.from_seed(bytes([3]) * 32)


def authority(node_id: str) -> bytes | None:
    return HQ.public_key if node_id == HQ.node_id else None


KEYS = {k.node_id: k.public_key for k in (HQ, HALL, OTHER)}  # the roster's members


def floor_at(key: KeyPair, counter_start: int = 1_765_000_000) -> F.Floor:
    return F.Floor(key, COMMUNE, authority, KEYS.get, counter_start=counter_start)


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


def test_a_neighbour_cannot_forge_the_holders_beacon() -> None:
    """The attack: OTHER, a roster member and HALL's neighbour off the path to the holder (HQ),
    makes up beacons for HQ with fresh counters to become HALL's voice-0 source."""
    hq, hall = floor_at(HQ), floor_at(HALL)
    root = HQ.node_id
    real = F.parse(hq.beacon_due(root, 0.0) or b"")
    assert isinstance(real, F.SourceBeacon) and real.holder == HQ.node_id and len(real.signature) == 64
    assert hall.receive_beacon("to-hq", real, root, 0.0, signed_only=True).source_changed
    signed_by_other = F.make_beacon(OTHER, COMMUNE, real.seq, real.counter + 5)
    forged = [
        F.SourceBeacon(real.seq, HQ.node_id, real.counter + 5, signed_by_other.signature),  # its own key
        F.SourceBeacon(real.seq, HQ.node_id, real.counter + 6, real.signature),  # HQ's signature, new counter
        F.make_beacon(HQ, bytes([9]) * 16, real.seq, real.counter + 7),  # signed for another commune
    ]
    for i, b in enumerate(forged):
        with pytest.raises(F.FloorError):
            hall.receive_beacon("to-other", F.parse(F.encode_signed_beacon(b)), root, 0.1 + i, signed_only=True)
    # the unsigned form from a peer that names the feature is refused, whatever its counter
    with pytest.raises(F.FloorError):
        hall.receive_beacon("to-other", F.SourceBeacon(real.seq, HQ.node_id, F.MAX_SEQ), root, 0.5, signed_only=True)
    # a beacon naming itself (it does not hold the floor) is ignored
    own = F.make_beacon(OTHER, COMMUNE, real.seq, F.MAX_SEQ)
    assert hall.receive_beacon("to-other", own, root, 0.6, signed_only=True) == F.FloorUpdate()
    assert hall.source_link == "to-hq" and hall.refused == 4 and hall.unsigned_taken == 0
    # the holder's own next beacon still counts
    assert hall.receive_beacon("to-hq", F.parse(hq.beacon_due(root, 1.0) or b""), root, 1.0, signed_only=True).forward


def test_beacons_point_at_the_holder_and_drop_replays_and_loops() -> None:
    hq, relay = floor_at(HQ), floor_at(HALL)
    root = HQ.node_id
    b = hq.beacon_due(root, 0.0)
    assert b is not None and hq.beacon_due(root, 0.5) is None and hq.beacon_due(root, 1.0) is not None
    b1 = F.parse(b)
    assert isinstance(b1, F.SourceBeacon) and b[0] == F.KIND_SIGNED_BEACON
    upd = relay.receive_beacon("link-to-hq", b1, root, 0.0, signed_only=True)
    assert upd.forward and upd.source_changed and relay.source_link == "link-to-hq"
    assert relay.receive_beacon("other-link", b1, root, 0.1, signed_only=True) == F.FloorUpdate()  # a loop
    b3 = F.parse(hq.beacon_due(root, 2.0) or b"")
    assert relay.receive_beacon("link-to-hq", b3, root, 2.0, signed_only=True).forward
    # an older real beacon, replayed by a neighbour (signed or in the 0x11 form of an old peer): dropped
    assert relay.receive_beacon("other-link", b1, root, 2.5, signed_only=True) == F.FloorUpdate()
    unsigned_b1 = F.parse(F.encode_beacon(b1))
    assert relay.receive_beacon("old-peer", unsigned_b1, root, 2.6, signed_only=False) == F.FloorUpdate()
    assert relay.receive_beacon("old-peer", F.parse(F.encode_beacon(b3)), root, 2.7, signed_only=False) == F.FloorUpdate()
    stale = F.make_beacon(OTHER, COMMUNE, b1.seq, 7)  # not the holder: ignored
    assert relay.receive_beacon("x", stale, root, 2.8, signed_only=True) == F.FloorUpdate()
    assert relay.source_link == "link-to-hq" and relay.refused == 0
    assert relay.link_gone("link-to-hq").source_changed and relay.source_link is None
    assert relay.beacon_due(root, 0.0) is None  # only the holder beacons


def test_a_restarted_holder_is_taken_after_the_forget_time() -> None:
    root = HQ.node_id
    hq, hall = floor_at(HQ, counter_start=5000), floor_at(HALL)
    assert hall.receive_beacon("a", F.parse(hq.beacon_due(root, 0.0) or b""), root, 0.0, signed_only=True).forward
    # HQ restarts with its clock set back: its counter starts lower than the last one taken
    hq2 = floor_at(HQ, counter_start=100)
    b = F.parse(hq2.beacon_due(root, 1.0) or b"")
    assert hall.receive_beacon("b", b, root, 1.0, signed_only=True) == F.FloorUpdate()
    assert hall.receive_beacon("b", b, root, F.BEACON_FORGET_S - 0.1, signed_only=True) == F.FloorUpdate()
    b = F.parse(hq2.beacon_due(root, 2.0) or b"")
    assert hall.receive_beacon("b", b, root, F.BEACON_FORGET_S + 0.5, signed_only=True).source_changed
    assert hall.source_link == "b"
    # a restart with the wall clock going forward is taken at once
    hq3 = floor_at(HQ, counter_start=6000)
    assert hall.receive_beacon("c", F.parse(hq3.beacon_due(root, 0.0) or b""), root, 11.0, signed_only=True).forward


def test_unsigned_beacons_from_old_peers_are_the_open_window_and_never_block_signed_ones() -> None:
    hq, hall = floor_at(HQ), floor_at(HALL)
    root = HQ.node_id
    b1 = F.parse(hq.beacon_due(root, 0.0) or b"")
    assert hall.receive_beacon("old-relay", F.parse(F.encode_beacon(b1)), root, 0.0, signed_only=False).forward
    assert hall.source_link == "old-relay" and hall.unsigned_taken == 1
    # an old peer (or one that claims to be old) makes up a beacon with the highest counter:
    # the open window lets it take the source, but the holder's next signed beacon takes it back
    assert hall.receive_beacon("liar", F.SourceBeacon(b1.seq, HQ.node_id, F.MAX_SEQ), root, 0.5, signed_only=False).forward
    assert hall.source_link == "liar"
    b2 = F.parse(hq.beacon_due(root, 1.0) or b"")
    assert hall.receive_beacon("new-relay", b2, root, 1.0, signed_only=True).source_changed
    assert hall.source_link == "new-relay" and hall.unsigned_taken == 2
    assert hall.status(root)["unsigned_taken"] == 2


def test_each_peer_gets_the_form_it_takes() -> None:
    """What the driver floods (MediaService._flood -> floor.for_peer): a peer that names the feature
    gets the holder's signed bytes unchanged, a peer of the previous release the 0x11 form; a relay
    holding only an unsigned beacon (from an old peer) has nothing for a feature peer; grants pass."""
    assert F.FEATURE == "floor-beacons/2"
    signed = F.encode_signed_beacon(F.make_beacon(HQ, COMMUNE, 2, 77))
    assert F.for_peer(signed, True) == signed
    old = F.for_peer(signed, False)
    assert old is not None and old[0] == F.KIND_SOURCE_BEACON and F.parse(old) == F.SourceBeacon(2, HQ.node_id, 77)
    unsigned = F.encode_beacon(F.SourceBeacon(2, HQ.node_id, 78))
    assert F.for_peer(unsigned, True) is None and F.for_peer(unsigned, False) == unsigned
    grant = F.encode_grant(F.make_grant(HQ, COMMUNE, 2, HALL.node_id))
    assert F.for_peer(grant, True) == F.for_peer(grant, False) == grant


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_give_floor_errors_only(data: bytes) -> None:
    for kind in (F.KIND_FLOOR, F.KIND_SOURCE_BEACON, F.KIND_SIGNED_BEACON):
        try:
            m = F.parse(bytes([kind]) + data)
        except F.FloorError:
            continue
        receive_every_way(m)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-2, 2**33), st.text(max_size=20), st.binary(max_size=70), st.none()), max_size=5))
def test_hostile_msgpack_fields_give_floor_errors_only(fields: list) -> None:
    for kind in (F.KIND_FLOOR, F.KIND_SOURCE_BEACON, F.KIND_SIGNED_BEACON):
        data = bytes([kind]) + msgpack.packb(fields)
        try:
            m = F.parse(data)
        except F.FloorError:
            continue
        receive_every_way(m)


def receive_every_way(m: F.FloorGrant | F.SourceBeacon) -> None:
    """A parsed hostile message into a fresh hall's floor, from a peer with and without the
    feature: FloorError is the only thing that may come out."""
    for signed_only in (False, True):
        try:
            floor_at(HALL).receive("l", m, HQ.node_id, 0.0, signed_only=signed_only)
        except F.FloorError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, F.MAX_SEQ), st.binary(min_size=64, max_size=64),
                          st.floats(0, 100)), max_size=6))
def test_made_up_signed_beacons_for_the_holder_never_move_the_source(forgeries: list) -> None:
    """Hostile beacons naming the real holder (fields valid, bytes on the wire, any counter and
    signature, any arrival time) from a peer that names the feature: FloorError or ignored, and
    the source stays on the link the holder's real beacon came on."""
    hq, hall = floor_at(HQ), floor_at(HALL)
    root = HQ.node_id
    hall.receive_beacon("to-hq", F.parse(hq.beacon_due(root, 0.0) or b""), root, 0.0, signed_only=True)
    for seq, counter, sig, now in forgeries:
        for body in (F.encode_signed_beacon(F.SourceBeacon(seq, HQ.node_id, counter, sig)),
                     F.encode_beacon(F.SourceBeacon(seq, HQ.node_id, counter))):
            try:
                hall.receive_beacon("to-forger", F.parse(body), root, now, signed_only=True)
            except F.FloorError:
                pass
    assert hall.source_link == "to-hq" and hall.unsigned_taken == 0


def test_grant_and_beacon_round_trip_bytes() -> None:
    g = F.make_grant(HQ, COMMUNE, 3, HALL.node_id)
    assert F.parse(F.encode_grant(g)) == g
    b = F.SourceBeacon(3, HALL.node_id, 12345)
    assert F.parse(F.encode_beacon(b)) == b
    signed = F.make_beacon(HALL, COMMUNE, 3, 1_765_000_000)
    assert F.parse(F.encode_signed_beacon(signed)) == signed
    assert F.parse(F.encode_beacon(signed)) == F.SourceBeacon(3, HALL.node_id, 1_765_000_000)  # its 0x11 form
    with pytest.raises(ValueError):
        F.encode_signed_beacon(b)  # a relay cannot make the signed form of an unsigned beacon
    assert len(F.encode_grant(g)) < 110 and len(F.encode_beacon(b)) < 30 and len(F.encode_signed_beacon(signed)) < 100


def floor_vectors() -> list[dict]:
    (vectors,) = doc_json_blocks("protocol/media.md", "floor-beacon-vectors")
    return vectors


def test_doc_signed_beacon_vectors() -> None:
    vs = floor_vectors()
    assert vs
    for v in vs:
        key = KeyPair.from_seed(bytes.fromhex(v["signer_seed_hex"]))
        commune = bytes.fromhex(v["commune_hex"])
        assert key.node_id == v["signer_node_id"]
        assert F.SOURCE_BEACON_CONTEXT.hex() == v["context_hex"]
        signed_input = F.SOURCE_BEACON_CONTEXT + commune + msgpack.packb([v["seq"], key.node_id, v["counter"]])
        assert signed_input.hex() == v["signed_input_hex"]
        m = F.make_beacon(key, commune, v["seq"], v["counter"])
        assert F.encode_signed_beacon(m).hex() == v["hex"] and F.parse(bytes.fromhex(v["hex"])) == m
        assert F.encode_beacon(m).hex() == v["unsigned_hex"]
        # a node of this release takes it (the roster gives the signer's key)
        holder_floor = F.Floor(KeyPair.from_seed(bytes([7]) * 32), commune, lambda _n: None,
                               {key.node_id: key.public_key}.get)
        holder_floor.grant = F.FloorGrant(v["seq"], key.node_id, "0" * 16, bytes(64))
        assert holder_floor.receive_beacon("l", F.parse(bytes.fromhex(v["hex"])), "0" * 16, 0.0, signed_only=True).forward


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
