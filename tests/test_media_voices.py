"""Up to three voices at once (meshmeet/media/voices.py, relay_voices.py): the attacker's tests first
(a hall that is not allowed cannot inject a voice; a relay cannot forge another node's voice or its
beacons), then routing on a tree of real relay cores, the wire (Hypothesis) and the doc's vectors."""

from __future__ import annotations


import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.media import chunk as C
from meshmeet.media import voices as V
from meshmeet.media.ladder import AUDIO_LEVEL
from meshmeet.media.relay import MediaRelay
from meshmeet.membership.identity import KeyPair
from conftest import doc_json_blocks

COMMUNE = bytes(16)
HQ = KeyPair.from_seed(bytes([1]) * 32)
HALL = KeyPair.from_seed(bytes([2]) * 32)  # the extra voice
OTHER = KeyPair.from_seed(bytes([3]) * 32)  # a hall that is not allowed
KEYS = {k.node_id: k.public_key for k in (HQ, HALL, OTHER)}


def authority(node_id: str) -> bytes | None:
    return HQ.public_key if node_id == HQ.node_id else None


def extra_at(key: KeyPair) -> V.ExtraVoice:
    return V.ExtraVoice(key, COMMUNE, authority, KEYS.get, counter_start=1000)


def audio(voice: int, seq: int, payload: bytes = b"\xfc\x00") -> bytes:
    return C.encode(C.Chunk(C.TRACK_AUDIO, voice, 0, True, 1, seq, seq * 20_000, 20_000, payload))


def voice_config(voice: int) -> bytes:
    return C.encode(C.DecoderConfig(C.TRACK_AUDIO, voice, 1, {"codec": "opus", "numberOfChannels": 1, "sampleRate": 48000}))


def drain(r: MediaRelay, link: str, now: float) -> list[bytes]:
    return list(iter(lambda: r.pop(link, now), None))


# ---- the attacker's tests ---------------------------------------------------------------------
def test_a_hall_that_is_not_allowed_cannot_inject_a_voice() -> None:
    r = MediaRelay(source="to-holder")
    r.add_link("to-holder", 0.0, simulcast=True, voices=True)
    r.add_link("to-other", 0.0, simulcast=True, voices=True)
    r.add_link("to-hall", 0.0, simulcast=True, voices=True)
    r.set_voice_source(V.VOICE_CHAIR, "to-holder")
    r.set_voice_source(V.VOICE_EXTRA, "to-hall")
    for voice in (V.VOICE_CHAIR, V.VOICE_EXTRA):  # OTHER speaks as the chair, then as the extra voice
        r.receive("to-other", voice_config(voice), 0.0)
        r.receive("to-other", audio(voice, 1), 0.0)
    r.receive("to-other", audio(0, 1), 0.0)  # and as the floor holder
    assert r.voices_refused == 4 and r.chunks_in == 0
    assert all(drain(r, link, 0.0) == [] for link in r.links())
    # with no extra voice allowed (no source), voice 2 is refused from every link
    r.set_voice_source(V.VOICE_EXTRA, None)
    r.receive("to-hall", audio(V.VOICE_EXTRA, 2), 0.0)
    assert r.voices_refused == 5 and all(drain(r, link, 0.0) == [] for link in r.links())


def test_a_relay_cannot_send_a_voice_back_towards_its_origin() -> None:
    # at the chair's child: the chair's voice comes from the parent; the same voice from a child
    # (a relay re-sending it, or forging it) is refused
    r = MediaRelay(source="parent")
    for link in ("parent", "child"):
        r.add_link(link, 0.0, simulcast=True, voices=True)
    r.set_voice_source(V.VOICE_CHAIR, "parent")
    r.receive("parent", audio(V.VOICE_CHAIR, 1), 0.0)
    assert drain(r, "parent", 0.0) == [] and drain(r, "child", 0.0) == [audio(V.VOICE_CHAIR, 1)]
    r.receive("child", audio(V.VOICE_CHAIR, 2), 0.0)
    assert r.voices_refused == 1 and drain(r, "parent", 0.0) == [] and drain(r, "child", 0.0) == []


def test_voice_grants_need_authority_and_a_signature() -> None:
    x = extra_at(OTHER)
    forged = V.make_grant(OTHER, COMMUNE, 5, OTHER.node_id)  # a hall allows itself
    with pytest.raises(V.VoiceError):
        x.receive_grant(forged)
    good = V.make_grant(HQ, COMMUNE, 5, HALL.node_id)
    with pytest.raises(V.VoiceError):
        x.receive_grant(V.VoiceGrant(good.seq, OTHER.node_id, good.granter, good.signature))  # tampered
    with pytest.raises(V.VoiceError):
        x.receive_grant(V.make_grant(HQ, bytes([9]) * 16, 6, OTHER.node_id))  # another commune
    assert x.refused == 3 and x.extra == "" and x.beacon_due(0.0) is None


def test_voice_beacons_cannot_be_forged_or_replayed() -> None:
    hq, hall, relay = extra_at(HQ), extra_at(HALL), extra_at(OTHER)
    grant = V.parse(hq.issue(HALL.node_id)[0])
    assert isinstance(grant, V.VoiceGrant)
    assert hall.receive_grant(grant).source_changed and hall.source_link == V.LOCAL
    relay.receive_grant(grant)
    b1 = V.parse(hall.beacon_due(0.0) or b"")
    assert isinstance(b1, V.VoiceBeacon)
    upd = relay.receive_beacon("to-hall", b1, 0.0)
    assert upd.forward and upd.source_changed and relay.source_link == "to-hall"
    # a relay forges a newer beacon for the hall, signed with its own key
    forged = V.VoiceBeacon(b1.seq, HALL.node_id, b1.counter + 5, V.make_beacon(OTHER, COMMUNE, b1.seq, b1.counter + 5).signature)
    with pytest.raises(V.VoiceError):
        relay.receive_beacon("to-forger", forged, 0.1)
    # a beacon for itself (it is not the extra voice) is ignored; a replay of an older one too
    assert relay.receive_beacon("to-forger", V.make_beacon(OTHER, COMMUNE, b1.seq, 9999), 0.2) == V.VoiceUpdate()
    b2 = V.parse(hall.beacon_due(1.0) or b"")
    assert relay.receive_beacon("to-hall", b2, 1.0).forward
    assert relay.receive_beacon("to-forger", b1, 1.1) == V.VoiceUpdate()  # replayed
    assert relay.receive_beacon("other-path", b2, 1.1) == V.VoiceUpdate()  # came round a loop
    assert relay.source_link == "to-hall" and relay.refused == 1


# ---- routing on a tree of relay cores ---------------------------------------------------------
class Tree:
    """HQ (root, the chair) - R - {B (the floor holder), E}; plus O, an old peer of R without voices."""

    EDGES = {"HQ": ["R"], "R": ["HQ", "B", "E", "O"], "B": ["R"], "E": ["R"], "O": ["R"]}

    def __init__(self) -> None:
        floor_src = {"HQ": "R", "R": "B", "B": V.LOCAL, "E": "R", "O": "R"}
        chair_src = {"HQ": V.LOCAL, "R": "HQ", "B": "R", "E": "R", "O": "R"}
        self.r = {n: MediaRelay(source=floor_src[n], keep_accepted=True) for n in self.EDGES}
        for n, peers in self.EDGES.items():
            for p in peers:
                self.r[n].add_link(p, 0.0, simulcast=True, voices=p != "O" and n != "O")
            self.r[n].set_voice_source(V.VOICE_CHAIR, chair_src[n])
        self.got: dict[str, list[bytes]] = {n: [] for n in self.EDGES}

    def speak(self, node: str, data: bytes, now: float) -> None:
        self.r[node].receive(V.LOCAL, data, now)
        self.run(now)

    def run(self, now: float) -> None:
        moved = True
        while moved:
            moved = False
            for n, peers in self.EDGES.items():
                for p in peers:
                    for m in drain(self.r[n], p, now):
                        moved = True
                        if p == "O" and C.parse(m).layer:  # type: ignore[union-attr]
                            raise AssertionError("an extra voice went to a peer that does not know voices")
                        self.r[p].receive(n, m, now)
        for n in self.EDGES:
            self.got[n] += [m for m in self.r[n].take_accepted() if m[0] == C.KIND_CHUNK]


def test_two_voices_reach_every_hall_and_never_come_back() -> None:
    t = Tree()
    for seq in range(50):
        now = seq * 0.02
        t.speak("B", audio(0, seq, b"B"), now)  # the floor holder
        t.speak("HQ", audio(V.VOICE_CHAIR, 1000 + seq, b"H"), now)  # the chair interjects
    for node in ("R", "E"):  # both voices, each with contiguous sequence numbers
        by_voice = {v: [C.parse(m).seq for m in t.got[node] if C.parse(m).layer == v] for v in (0, 1)}
        assert by_voice == {0: list(range(50)), 1: list(range(1000, 1050))}
    # the floor holder's voice comes to HQ once, as itself; HQ's own voice never comes back; the
    # old peer gets voice 0 only
    assert [C.parse(m).seq for m in t.got["HQ"] if C.parse(m).layer == 0] == list(range(50))
    assert sum(1 for m in t.got["HQ"] if C.parse(m).layer == 1) == 50  # only its own, accepted locally
    assert {C.parse(m).layer for m in t.got["B"]} == {0, 1}
    assert sum(1 for m in t.got["B"] if C.parse(m).layer == 0) == 50  # its own, never sent back
    assert {C.parse(m).layer for m in t.got["O"]} == {0}
    assert all(t.r[n].voices_refused == 0 for n in t.r)


def test_voices_pass_at_audio_only_and_count_in_the_audio_load() -> None:
    r = MediaRelay(source="up")
    r.add_link("weak", 0.0, simulcast=True, start_level=AUDIO_LEVEL, voices=True)
    r.set_voice_source(V.VOICE_EXTRA, "up")
    r.receive("up", voice_config(V.VOICE_EXTRA), 0.0)
    got = []
    for seq in range(50):
        r.receive("up", audio(0, seq, bytes(60)), seq * 0.02)
        r.receive("up", audio(V.VOICE_EXTRA, seq, bytes(60)), seq * 0.02)
        got += [C.parse(m) for m in drain(r, "weak", seq * 0.02)]
    assert r.link_stats("weak", 1.0).layer == "audio"
    assert [m.layer for m in got if isinstance(m, C.Chunk)].count(V.VOICE_EXTRA) == 50
    assert isinstance(got[0], C.DecoderConfig) and got[0].layer == V.VOICE_EXTRA
    r._rates.roll(1.0)
    assert r._rates.audio_bps() >= 2 * 50 * 74 * 8 * 0.9  # both voices' bytes, not one


def test_a_late_joiner_and_a_peer_that_says_voices_later_get_each_voice_config_first() -> None:
    r = MediaRelay(source="up")
    r.set_voice_source(V.VOICE_CHAIR, "up")
    r.receive("up", voice_config(V.VOICE_CHAIR), 0.0)
    r.add_link("old-until-caps", 0.0, simulcast=True)
    r.receive("up", audio(V.VOICE_CHAIR, 1), 0.0)
    assert drain(r, "old-until-caps", 0.0) == []  # it has not said it knows voices
    r.set_link_voices("old-until-caps", True, 0.1)
    r.receive("up", audio(V.VOICE_CHAIR, 2), 0.1)
    assert drain(r, "old-until-caps", 0.1) == [voice_config(V.VOICE_CHAIR), audio(V.VOICE_CHAIR, 2)]
    r.add_link("late", 0.2, voices=True)
    assert drain(r, "late", 0.2) == [voice_config(V.VOICE_CHAIR)]
    r.set_voice_source(V.VOICE_CHAIR, "up", new_origin=True)  # another site is the chair now
    r.add_link("later", 0.3, voices=True)
    assert drain(r, "later", 0.3) == []


def test_who_speaks_each_voice() -> None:
    hq, b, x = "a" * 16, "b" * 16, "c" * 16
    assert V.owners(hq, hq, "") == (hq, None, None)  # the chair holds the floor: one voice
    assert V.owners(b, hq, "") == (b, hq, None)
    assert V.owners(b, hq, x) == (b, hq, x)
    assert V.owners(b, hq, b) == (b, hq, None) and V.owners(b, hq, hq) == (b, hq, None)
    assert [V.my_voice(n, b, hq, x) for n in (b, hq, x, "d" * 16)] == [0, 1, 2, None]


# ---- the wire ---------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_give_voice_errors_only(data: bytes) -> None:
    for kind in (V.KIND_VOICE_GRANT, V.KIND_VOICE_BEACON):
        try:
            m = V.parse(bytes([kind]) + data)
        except V.VoiceError:
            continue
        assert V.parse(V.encode(m)) == m


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-2, 2**33), st.text(max_size=20), st.binary(max_size=70), st.none()), max_size=5))
def test_hostile_msgpack_fields_give_voice_errors_only(fields: list) -> None:
    for kind in (V.KIND_VOICE_GRANT, V.KIND_VOICE_BEACON):
        try:
            m = V.parse(bytes([kind]) + msgpack.packb(fields))
        except V.VoiceError:
            continue
        x = extra_at(OTHER)
        try:
            if isinstance(m, V.VoiceGrant):
                x.receive_grant(m)
            else:
                x.receive_beacon("l", m, 0.0)
        except V.VoiceError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2), st.integers(0, 2**32 - 1), st.integers(0, C.MAX_TIMESTAMP_US), st.binary(max_size=40))
def test_as_voice_only_changes_the_voice(voice: int, seq: int, ts: int, payload: bytes) -> None:
    c = C.Chunk(C.TRACK_AUDIO, 0, 0, True, 7, seq, ts, 20_000, payload)
    moved = V.as_voice(C.encode(c), voice)
    assert V.voice_of(moved) == voice and C.parse(moved) == C.Chunk(C.TRACK_AUDIO, voice, 0, True, 7, seq, ts, 20_000, payload)
    assert V.voice_of(C.encode(C.Chunk(C.TRACK_VIDEO, 1, 0, True, 0, 1, 0, 0, b""))) is None


def test_audio_voice_3_and_audio_rate_requests_for_other_voices_are_format_errors() -> None:
    with pytest.raises(C.MediaFormatError):
        C.parse(bytes.fromhex("013201000000000000000000") + b"\x00\xc8")  # audio layer 3
    with pytest.raises(C.MediaFormatError):
        C.parse(bytes.fromhex("061010"))  # an audio rate request for voice 1


def voice_vectors() -> list[dict]:
    (vectors,) = doc_json_blocks("protocol/media.md", "voice-vectors")
    return vectors


def test_doc_voice_vectors() -> None:
    vs = voice_vectors()
    assert {v["kind"] for v in vs} == {"voice-grant", "voice-beacon"}
    for v in vs:
        key = KeyPair.from_seed(bytes.fromhex(v["signer_seed_hex"]))
        assert key.node_id == v["signer_node_id"]
        if v["kind"] == "voice-grant":
            m = V.make_grant(key, bytes.fromhex(v["commune_hex"]), v["seq"], v["extra"])
            x = V.ExtraVoice(HALL, bytes.fromhex(v["commune_hex"]), authority, KEYS.get)
            assert x.receive_grant(V.parse(bytes.fromhex(v["hex"]))).extra_changed
        else:
            m = V.make_beacon(key, bytes.fromhex(v["commune_hex"]), v["seq"], v["counter"])
        assert V.encode(m).hex() == v["hex"] and V.parse(bytes.fromhex(v["hex"])) == m
