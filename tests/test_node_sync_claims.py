"""Shared chunk claims between the SyncSessions of one node (sans-IO, real in-memory stores).

One chunk is asked of one peer at a time; a peer that asks back for a chunk we asked it for
releases our claim (it lacks the chunk too); a held request is only made where `may_owe`
allows; closing a session frees its claims. Hypothesis: whatever order links come up and go
down, a node fetches each chunk of a document exactly once per successful delivery and ends
up with the whole document.
"""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.meeting import meetings as m
from meshmeet.sync.messages import NoChunk, Want, decode
from meshmeet.sync.events import ChunkStored
from meshmeet.sync.session import ChunkClaims, SyncSession
from meshmeet.meeting.replica import open_store
from meshmeet.store.db import Store

KEYS = [KeyPair.from_seed(bytes([i]) * 32) for i in (11, 12, 13)]
HQ, HALL1, HALL2 = KEYS
ROLES = {HQ.node_id: "hq", HALL1.node_id: "hall", HALL2.node_id: "hall"}


def mk(key: KeyPair) -> Store:
    return open_store(":memory:", key, ROLES.get, clock=lambda: 1_700_000_000.0)


def with_document(chunks: int, seed: int = 0) -> tuple[Store, str]:
    hq = mk(HQ)
    mid = m.create_meeting(hq, "Họp")
    doc = m.add_document(hq, mid, io.BytesIO(random.Random(seed).randbytes(chunks * 256 * 1024)), "d.bin")
    return hq, doc


def sync_rows(src: Store, dst: Store) -> None:
    from meshmeet.store.batch import decode_batch

    dst.apply([decode_batch(b.body, b.sig) for b in src.batches_after(dst.version_vector())])


def wants(out) -> list[bytes]:
    hashes: list[bytes] = []
    for o in out:
        msg = decode(o.data)
        if isinstance(msg, Want):
            hashes += msg.hashes
    return hashes


def test_two_sessions_never_ask_for_the_same_chunk():
    hq, doc = with_document(20)
    hall = mk(HALL1)
    sync_rows(hq, hall)
    claims = ChunkClaims()
    a = SyncSession(hall, HQ.node_id, 0.0, claims)
    b = SyncSession(hall, HALL2.node_id, 0.0, claims)
    for s in (a, b):
        s.peer_vector = hall.version_vector()
    asked_a, asked_b = wants(a.on_local_change(0.0)), wants(b.on_local_change(0.0))
    assert len(asked_a) == len(asked_b) == 8 and not set(asked_a) & set(asked_b)
    assert len(claims) == 16
    a.close()  # the link to HQ went down: its 8 chunks are free for b
    assert len(claims) == 8
    assert set(wants(b.on_timer(0.0)) + wants(b.on_local_change(0.0))) <= set(asked_a) | set(asked_b)


def test_asking_back_releases_our_claim_and_answers_no_chunk():
    hq, doc = with_document(3)
    h1, h2 = mk(HALL1), mk(HALL2)
    sync_rows(hq, h1)
    sync_rows(hq, h2)
    c1 = ChunkClaims()
    s12 = SyncSession(h1, HALL2.node_id, 0.0, c1)
    s12.peer_vector = h1.version_vector()
    asked = wants(s12.on_local_change(0.0))
    assert len(asked) == 3 and len(c1) == 3
    s21 = SyncSession(h2, HALL1.node_id, 0.0, ChunkClaims(), may_owe=lambda peer: True)
    s21.peer_vector = h2.version_vector()
    back = s21.on_local_change(0.0)
    out, _ = s12.receive(back[0].data, 1.0)
    assert len(c1) == 0 and s12.in_flight_chunks == 0
    assert any(isinstance(decode(o.data), NoChunk) for o in out)


def test_held_requests_only_where_allowed():
    hq, doc = with_document(2)
    h1 = mk(HALL1)
    sync_rows(hq, h1)
    for allowed in (True, False):
        s = SyncSession(h1, HALL2.node_id, 0.0, ChunkClaims(), may_owe=lambda peer: allowed)
        s.peer_vector = h1.version_vector()
        want = Want(tuple(h1.wanted_chunks(2)))
        from meshmeet.sync.messages import encode

        out, _ = s.receive(encode(want), 0.0)
        replies = [decode(o.data) for o in out]
        if allowed:
            assert replies == []  # held: answered when the chunk arrives
        else:
            assert replies == [NoChunk(want.hashes)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["hq", "hall2"]), st.integers(1, 6)), min_size=1, max_size=12),
       st.integers(0, 3))
def test_any_link_schedule_fetches_each_chunk_once_per_delivery(schedule, seed):
    """hall1 fetches from HQ and from hall2 (which holds the document too); links flap."""
    hq, doc = with_document(6, seed)
    h1, h2 = mk(HALL1), mk(HALL2)
    sync_rows(hq, h1)
    sync_rows(hq, h2)
    for h in h2.wanted_chunks(100):
        h2.put_chunk(h, hq.get_chunk(h))
    sources = {"hq": hq, "hall2": h2}
    claims = ChunkClaims()
    sessions: dict[str, tuple[SyncSession, SyncSession]] = {}
    stored = received = 0
    now = 0.0

    def connect(name: str) -> None:
        mine = SyncSession(h1, sources[name].node_id, now, claims)
        theirs = SyncSession(sources[name], h1.node_id, now)
        mine.peer_vector, theirs.peer_vector = h1.version_vector(), sources[name].version_vector()
        sessions[name] = (mine, theirs)

    def pump(name: str, steps: int) -> None:
        nonlocal stored
        mine, theirs = sessions[name]
        to_them = [o.data for o in mine.on_local_change(now)]
        for _ in range(steps):
            to_me = []
            for data in to_them:
                out, _ = theirs.receive(data, now)
                to_me += [o.data for o in out]
            to_them = []
            for data in to_me:
                out, events = mine.receive(data, now)
                stored += sum(isinstance(e, ChunkStored) for e in events)
                to_them += [o.data for o in out]
            if not to_them:
                break

    for name, steps in schedule:
        if name in sessions:
            received += sessions[name][0].chunks_in
            sessions.pop(name)[0].close()  # the link drops with whatever was in flight
        else:
            connect(name)
            pump(name, steps)
    for name in ("hq", "hall2"):
        if name in sessions:
            received += sessions[name][0].chunks_in
            sessions.pop(name)[0].close()
    connect("hq")
    pump("hq", 1000)
    received += sessions["hq"][0].chunks_in
    assert h1.pending_chunks() == 0 and stored == 6
    assert received == 6  # no chunk arrived twice, whatever the link schedule
    assert len(claims) == 0
    assert b"".join(h1.read_document(doc)) == b"".join(hq.read_document(doc))
