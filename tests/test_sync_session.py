"""The sans-IO sync protocol: in-sync check, catch-up, push, forged and hostile input, chunks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.meeting import meetings as m
from meshmeet.store.batch import decode_batch, encode_batch
from meshmeet.sync.messages import (Batch, Chunk, Hello, NoChunk, Vector, Want, decode, encode,
                                    vector_hash)
from meshmeet.store.errors import ProtocolError
from meshmeet.sync.events import Applied, BatchForged, ChangeRejected, ChunkRefused, ChunkStored, InSync, ProtocolViolation
from meshmeet.sync.session import CHUNK_RETRY_S, SyncSession
from meshmeet.sync.sim import SimNet
from meshmeet.meeting.replica import open_store
from meshmeet.store.db import Store

from conftest import FakeClock

KEYS = [KeyPair.from_seed(bytes([i]) * 32) for i in range(11, 17)]
HQ, HALL1, HALL2, RELAY, STRANGER, HALL3 = KEYS
ROLES = {HQ.node_id: "hq", HALL1.node_id: "hall", HALL2.node_id: "hall", RELAY.node_id: "relay",
         HALL3.node_id: "hall"}


def mk(key: KeyPair, path: str | Path = ":memory:", clock=None) -> Store:
    return open_store(path, key, ROLES.get, clock=clock or FakeClock())


def pair(a: Store, b: Store) -> tuple[SyncSession, SyncSession]:
    return SyncSession(a, b.node_id, 0.0), SyncSession(b, a.node_id, 0.0)


def pump(sa: SyncSession, sb: SyncSession, first_a, first_b, now: float = 0.0, tamper=None):
    """Deliver messages both ways until quiet; returns the events seen at each side."""
    qa, qb = list(first_b), list(first_a)  # qa: inbox of a
    ev_a, ev_b = [], []
    while qa or qb:
        if qa:
            msg = qa.pop(0)
            out, ev = sa.receive(msg.data, now)
            ev_a += ev
            qb += out
        if qb:
            msg = qb.pop(0)
            out, ev = sb.receive(msg.data if tamper is None else tamper(msg).data, now)
            ev_b += ev
            qa += out
    return ev_a, ev_b


def test_in_sync_check_is_one_message_under_64_bytes_each_way() -> None:
    hq, hall = mk(HQ), mk(HALL1)
    mid = m.create_meeting(hq, "Họp")
    m.add_agenda_item(hq, mid, "Một")
    net = SimNet([hq, hall])
    net.connect(0, 1)
    net.run()
    assert hq.digest() == hall.digest()
    sa, sb = pair(hq, hall)
    hello_a, hello_b = sa.on_connect(), sb.on_connect()
    assert len(hello_a) == len(hello_b) == 1
    assert len(hello_a[0].data) < 64 and len(hello_b[0].data) < 64
    out_a, ev_a = sa.receive(hello_b[0].data, 0.0)
    out_b, ev_b = sb.receive(hello_a[0].data, 0.0)
    assert out_a == [] and out_b == [] and ev_a == [InSync()] and ev_b == [InSync()]


def test_catch_up_both_ways_after_a_partition() -> None:
    clock = FakeClock()
    hq, hall = mk(HQ, clock=clock), mk(HALL1, clock=clock)
    mid = m.create_meeting(hq, "Họp")
    net = SimNet([hq, hall])
    net.connect(0, 1)
    net.run()
    net.disconnect(0, 1)
    motion = m.open_motion(hq, mid, "Biểu quyết")
    m.add_agenda_item(hq, mid, "Hai")
    m.checkin(hall, mid, 17)
    m.feedback(hall, "Đường làng ngập nước", mid)
    assert hq.digest() != hall.digest()
    net.connect(0, 1)
    net.run()
    assert hq.digest() == hall.digest()
    assert hq.version_vector() == hall.version_vector()
    # Live push: a vote made while connected reaches HQ without a reconnect.
    m.vote(hall, motion, "yes", count=10)
    net.changed(1)
    net.run()
    assert m.tally(hq, motion)["yes"] == 10 and hq.digest() == hall.digest()


def test_changes_flow_across_a_relay_chain() -> None:
    stores = [mk(HQ), mk(RELAY), mk(HALL1), mk(HALL2)]
    net = SimNet(stores)
    for a, b in ((0, 1), (1, 2), (2, 3)):
        net.connect(a, b)
    net.run()
    mid = m.create_meeting(stores[0], "Hội nghị toàn xã")
    net.changed(0)
    m.feedback(stores[3], "Câu hỏi của bà con")
    net.changed(3)
    net.run()
    assert len({s.digest() for s in stores}) == 1 and stores[3].get("meetings", mid) is not None


def test_forged_batch_is_dropped_and_counted() -> None:
    hq, hall = mk(HQ), mk(HALL1)
    good = encode_batch(HQ, 1, [(1 << 40, 8, 0, ("a1",), {0: "thông báo", 1: 0, 2: 1.0})])
    session = SyncSession(hall, HQ.node_id, 0.0)
    forged = encode(Batch(good.body.replace("thông".encode(), "THÔNG".encode()), good.sig))
    out, events = session.receive(forged, 0.0)
    assert out == [] and events == [BatchForged("bad batch signature")]
    assert hall.counters.forged_batches == 1 and hall.rows("announcements") == [] and hall.version_vector() == {}
    assert not session.closed
    out, events = session.receive(encode(Batch(good.body, good.sig)), 0.0)
    assert any(isinstance(e, Applied) for e in events) and len(hall.rows("announcements")) == 1


def test_validly_signed_change_without_authority_is_rejected_by_the_session() -> None:
    hq = mk(HQ)
    rogue = encode_batch(HALL1, 1, [(1 << 40, 6, 0, ("mo1",), {0: "m", 1: "rogue motion", 2: "majority",
                                                               3: "open", 4: None})])
    session = SyncSession(hq, HALL2.node_id, 0.0)
    _, events = session.receive(encode(Batch(rogue.body, rogue.sig)), 0.0)
    assert [type(e) for e in events] == [ChangeRejected, Applied]
    assert events[0].origin == HALL1.node_id and "hall" in events[0].reason
    assert hq.rows("motions") == [] and hq.counters.rejected_changes == 1


def test_message_round_trip() -> None:
    for msg in (Hello(bytes(16)), Vector({HQ.node_id: 5, HALL1.node_id: 1}), Batch(b"x", bytes(64)),
                Want((bytes(32),)), Chunk(bytes(32), 0, 4, b"data"), NoChunk((bytes(32), b"\x01" * 32))):
        assert decode(encode(msg)) == msg
    assert vector_hash({HQ.node_id: 1, HALL1.node_id: 0}) == vector_hash({HQ.node_id: 1})


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.lists(st.one_of(st.integers(-3, 10), st.binary(max_size=40), st.text(max_size=4),
                                    st.dictionaries(st.binary(max_size=9), st.integers(-5, 2 ** 64 - 1),
                                                    max_size=3),
                                    st.lists(st.binary(max_size=33), max_size=3)),
                          max_size=4).map(lambda x: msgpack.packb(x, use_bin_type=True))))
def test_hostile_bytes_give_a_protocol_violation_never_an_exception(data) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass
    store = mk(HALL1)
    session = SyncSession(store, HQ.node_id, 0.0)
    session.on_connect()
    out, events = session.receive(data, 0.0)
    assert all(isinstance(e, (ProtocolViolation, BatchForged, InSync)) for e in events) or out
    if any(isinstance(e, ProtocolViolation) for e in events):
        assert session.closed and out == []
        assert session.receive(encode(Hello(bytes(16))), 0.0) == ([], [])
    assert store.version_vector() == {}


def _doc_fixture(size: int = 5 * 256 * 1024 + 1000):
    hq, hall = mk(HQ), mk(HALL1)
    mid = m.create_meeting(hq, "Họp")
    data = os.urandom(size)
    doc = m.add_document(hq, mid, io.BytesIO(data), name="tai-lieu.pdf")
    return hq, hall, doc, data


def test_document_chunks_are_bulk_and_batches_are_live() -> None:
    hq, hall, doc, data = _doc_fixture()
    sa, sb = pair(hq, hall)
    seen = []

    def spy(o):
        seen.append((type(decode(o.data)).__name__, o.bulk))
        return o
    pump(sa, sb, sa.on_connect(), sb.on_connect(), tamper=spy)
    kinds = dict(seen)
    assert kinds["Batch"] is False and kinds["Chunk"] is True
    assert b"".join(hall.read_document(doc)) == data
    assert hall.document_progress(doc) == (6, 6) and hall.pending_chunks() == 0


def test_corrupted_chunk_is_refused_and_fetched_again() -> None:
    hq, hall, doc, data = _doc_fixture()
    sa, sb = pair(hq, hall)
    spoiled = []

    def corrupt_once(o):
        msg = decode(o.data)
        if isinstance(msg, Chunk) and not spoiled:
            spoiled.append(msg.sha256)
            bad = msg.data[:-1] + bytes([msg.data[-1] ^ 1])
            return type(o)(encode(Chunk(msg.sha256, msg.offset, msg.total, bad)), True)
        return o
    _, ev_hall = pump(sa, sb, sa.on_connect(), sb.on_connect(), tamper=corrupt_once)
    assert ChunkRefused(spoiled[0]) in ev_hall
    assert hall.counters.corrupt_chunks == 1
    assert b"".join(hall.read_document(doc)) == data


def test_transfer_resumes_after_restart_without_refetching(tmp_path: Path) -> None:
    hq, _, doc, data = _doc_fixture()
    path = tmp_path / "hall.db"
    hall = mk(HALL1, path)
    sa, sb = pair(hq, hall)
    qa, qb = list(sb.on_connect()), list(sa.on_connect())
    stored = 0
    while stored < 3:  # deliver until the hall holds 3 of 6 chunks, then "cut the power"
        if qa:
            qb += sa.receive(qa.pop(0).data, 0.0)[0]
        if qb:
            out, ev = sb.receive(qb.pop(0).data, 0.0)
            stored += sum(isinstance(e, ChunkStored) for e in ev)
            qa += out
    hall.close()
    hall = mk(HALL1, path)
    assert hall.integrity_ok() and hall.document_progress(doc) == (3, 6) and hall.pending_chunks() == 3
    held = hall.has_chunks(_doc_hashes(hq, doc))
    assert len(held) == 3
    sa, sb = pair(hq, hall)
    asked = []

    def spy(o):
        msg = decode(o.data)
        if isinstance(msg, Want):
            asked.extend(msg.hashes)
        return o
    # pump() passes what goes to its second session (here HQ) through the spy.
    pump(sb, sa, sb.on_connect(), sa.on_connect(), tamper=spy)
    assert len(asked) == 3 and not set(asked) & held
    assert b"".join(hall.read_document(doc)) == data


def _doc_hashes(store: Store, doc: str) -> list[bytes]:
    from meshmeet.store.chunks import parse_hashes
    return parse_hashes(store.get("documents", doc)["chunks"])


def test_peer_lacking_a_chunk_is_asked_again_after_retry() -> None:
    hq, hall, doc, data = _doc_fixture(1000)
    relay = mk(HALL2)
    relay.apply([decode_batch(b.body, b.sig) for b in hq.batches_after({})])
    relay._conn.execute("DELETE FROM wanted_chunks")  # the relay neither has nor fetches it
    sr, sh = pair(relay, hall)
    pump(sr, sh, sr.on_connect(), sh.on_connect())
    assert hall.pending_chunks() == 1 and sh.next_deadline() == CHUNK_RETRY_S
    relay.store_chunks([(h, hq.get_chunk(h)) for h in _doc_hashes(hq, doc)])
    assert sh.on_timer(1.0) == []
    [want] = sh.on_timer(CHUNK_RETRY_S)
    assert isinstance(decode(want.data), Want) and want.bulk
    out, _ = sr.receive(want.data, CHUNK_RETRY_S)
    sh.receive(out[0].data, CHUNK_RETRY_S)
    assert b"".join(hall.read_document(doc)) == data


# ------------------------------------------------------------------ convergence under schedules

N = 4
node_ix = st.integers(0, N - 1)
steps = st.one_of(
    st.tuples(st.just("write"), node_ix, st.integers(0, 7), st.text(max_size=6)),
    st.tuples(st.just("link"), node_ix, node_ix, st.just(0)),
    st.tuples(st.just("cut"), node_ix, node_ix, st.just(0)),
    st.tuples(st.just("run"), st.integers(1, 6), st.just(0), st.just(0)),
    st.tuples(st.just("replay"), node_ix, node_ix, st.integers(0, 50)),
    st.tuples(st.just("reorder"), node_ix, node_ix, st.just(0)),
    st.tuples(st.just("rogue"), node_ix, st.just(0), st.just(0)),
    st.tuples(st.just("tick"), st.just(0), st.just(0), st.just(0)),
)


def _write(store: Store, what: int, text: str, mids: list[str]) -> None:
    from meshmeet.store.errors import AuthorityError, SyncError
    try:
        if what == 0 or not mids:
            mids.append(m.create_meeting(store, text or "họp"))
        elif what == 1:
            m.add_agenda_item(store, mids[-1], text)
        elif what == 2:
            store.write("meetings", mids[0], {"title": text})
        elif what == 3:
            m.checkin(store, mids[-1], len(text))
        elif what == 4:
            m.feedback(store, text or "?")
        elif what == 5:
            m.announce(store, text)
        elif what == 6:
            store.delete("meetings", mids[-1])
        else:
            m.chat(store, mids[0], text)
    except (AuthorityError, SyncError):
        pass  # refused where it is made


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, max_size=40), st.randoms(use_true_random=False))
def test_any_schedule_converges_after_the_links_heal(schedule, rnd) -> None:
    clock = FakeClock()
    stores = [mk(k, clock=clock) for k in (HQ, HALL1, HALL2, RELAY)]
    net = SimNet(stores)
    sent: list[bytes] = []
    mids: list[str] = []
    rogue_seq = [0]
    for kind, a, b, c in schedule:
        clock.t += 0.01
        if kind == "write":
            _write(stores[a], b, c, mids)
            net.changed(a)
        elif kind == "link":
            net.connect(a, b)
        elif kind == "cut":
            net.disconnect(a, b)
        elif kind == "run":
            for _ in range(a):
                for half in net.links.values():
                    sent.extend(half.inbox)
                net.step()
        elif kind == "replay" and sent and net.connected(a, b):
            net.links[(a, b)].inbox.append(sent[c % len(sent)])
        elif kind == "reorder" and net.connected(a, b):
            rnd.shuffle(net.links[(a, b)].inbox)
        elif kind == "rogue":
            # A hall (on the roster, not one of these four) signs an announcement (HQ only),
            # with a gap in its sequence numbers, and slips it to node a directly.
            rogue_seq[0] += 1
            batch = encode_batch(HALL3, 2 * rogue_seq[0],
                                 [(1 << 50, 8, 0, (f"rogue{rogue_seq[0]}",), {0: "giả mạo", 1: 1, 2: 1.0})])
            stores[a].apply([decode_batch(batch.body, batch.sig)])
            net.changed(a)
        elif kind == "tick":
            net.tick(1e9)
    # Heal: fresh links along a chain, deliver everything.
    for a in range(N):
        for b in range(N):
            net.disconnect(a, b)
    for a in range(N - 1):
        net.connect(a, a + 1)
    if mids:  # a write while the Hellos of the healed links are in flight
        stores[0].write("meetings", mids[0], {"title": "vừa nối lại"})
        net.changed(0)
    net.run()
    net.tick(1e9)
    net.run()
    assert len({s.digest() for s in stores}) == 1
    assert all(not r["id"].startswith("rogue") for s in stores for r in s.rows("announcements"))
    assert not any(isinstance(e, ProtocolViolation) for _, e in net.events)


def test_change_made_while_hellos_cross_is_not_missed() -> None:
    hq, hall = mk(HQ), mk(HALL1)
    net = SimNet([hq, hall])
    net.connect(0, 1)            # both Hellos (of empty vectors) are now in flight
    mid = m.create_meeting(hq, "Họp")  # ... and HQ changes before they arrive
    net.changed(0)
    net.run()
    assert hall.get("meetings", mid) is not None and hq.digest() == hall.digest()


def test_long_history_is_pushed_in_slices(monkeypatch) -> None:
    import meshmeet.sync.session as session_module
    monkeypatch.setattr(session_module, "MAX_BATCHES_PER_PUSH", 2)
    hq, hall = mk(HQ), mk(HALL1)
    for i in range(7):
        m.announce(hq, f"thông báo {i}")  # 7 batches of one change
    sa, sb = pair(hq, hall)
    qb = sa.on_connect()
    out_b = sb.on_connect()
    out_a, _ = sa.receive(out_b[0].data, 0.0)  # hq answers the hall's Hello with its Vector
    for o in qb + out_a:
        for reply in sb.receive(o.data, 0.0)[0]:
            for o2 in sa.receive(reply.data, 0.0)[0]:
                sb.receive(o2.data, 0.0)
    assert len(hall.rows("announcements")) == 2 and sa.next_deadline() == float("-inf")
    while sa.next_deadline() == float("-inf"):
        for o in sa.on_timer(0.0):
            sb.receive(o.data, 0.0)
    assert hall.digest() == hq.digest() and sa.next_deadline() is None


def test_every_message_fits_one_link_message() -> None:
    from meshmeet.sync.messages import MAX_MESSAGE_BYTES
    from meshmeet.wire import MAX_MESSAGE_BYTES as LINK_MESSAGE_BYTES
    assert MAX_MESSAGE_BYTES <= LINK_MESSAGE_BYTES - 1  # the service byte comes first
    hq, hall, doc, data = _doc_fixture(3 * 256 * 1024 + 5)
    with hq.batch():
        for i in range(3000):
            hq.write("chat", f"c{i}", {"meeting_id": "m", "node": HQ.node_id, "text": "x" * 200, "at": 1.0})
    hq.write("announcements", "big", {"text": "ơ" * 10_000, "urgent": 0, "at": 1.0})
    sa, sb = pair(hq, hall)
    sizes = []

    def spy(o):
        sizes.append(len(o.data))
        return o
    pump(sa, sb, sa.on_connect(), sb.on_connect(), tamper=spy)
    assert max(sizes) <= MAX_MESSAGE_BYTES and hall.digest() == hq.digest()
    assert b"".join(hall.read_document(doc)) == data


def test_change_too_large_for_a_batch_is_refused() -> None:
    from meshmeet.store.errors import SyncError
    hq = mk(HQ)
    with pytest.raises(SyncError):
        hq.write("announcements", "a", {"text": "x" * 40_000})
    with pytest.raises(SyncError):
        hq.write("documents", "d", {"name": "x" * 30_000, "sha256": "y" * 30_000})
    assert hq.change_count() == 0


def test_unasked_or_out_of_order_chunk_pieces_are_ignored() -> None:
    hq, hall, doc, data = _doc_fixture(100_000)
    session = SyncSession(hall, HQ.node_id, 0.0)
    [h] = _doc_hashes(hq, doc)
    out, events = session.receive(encode(Chunk(h, 0, len(data), data[:60_000])), 0.0)
    assert (out, events) == ([], [])  # the hall never asked
    hall.apply([decode_batch(b.body, b.sig) for b in hq.batches_after({})])
    session.on_local_change(0.0)
    session.receive(encode(Vector({})), 0.0)  # start the session: it asks for the chunk
    assert session.in_flight_chunks == 1
    assert session.receive(encode(Chunk(h, 60_000, len(data), data[60_000:])), 0.0) == ([], [])
    assert hall.pending_chunks() == 1  # a second piece without the first is dropped
    session.receive(encode(Chunk(h, 0, len(data), data[:60_000])), 0.0)
    _, events = session.receive(encode(Chunk(h, 60_000, len(data), data[60_000:])), 0.0)
    assert events == [ChunkStored(h, 0)] and b"".join(hall.read_document(doc)) == data


def _mixed_messages() -> list[bytes]:
    """Batches a hall may receive: HQ's (applied), a hall's motion (signed, rejected), a forged
    one, a duplicate, one past a gap, and a VECTOR between them."""
    hq = mk(HQ)
    mid = m.create_meeting(hq, "Họp")
    for i in range(4):
        m.add_agenda_item(hq, mid, f"Mục {i}")
    held = [encode(Batch(b.body, b.sig)) for b in hq.batches_after({})]
    rogue = encode_batch(HALL1, 1, [(1 << 40, 6, 0, ("mo1",), {0: "m", 1: "rogue", 2: "majority",
                                                               3: "open", 4: None})])
    good = encode_batch(HQ, 9, [(1 << 41, 8, 0, ("a1",), {0: "thông báo", 1: 0, 2: 1.0})])  # past a gap
    forged = Batch(good.body.replace("thông".encode(), "THÔNG".encode()), good.sig)
    return [held[0], held[1], encode(Vector({HQ.node_id: 1})), held[2], held[2], encode(Batch(rogue.body, rogue.sig)),
            encode(forged), held[3], encode(Batch(good.body, good.sig)), held[4]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 4), min_size=1, max_size=10))
def test_messages_received_together_end_as_one_by_one(monkeypatch, cuts) -> None:
    messages = _mixed_messages()
    one, grouped = mk(HALL2), mk(HALL2)
    s_one, s_grouped = SyncSession(one, HQ.node_id, 0.0), SyncSession(grouped, HQ.node_id, 0.0)
    events_one = [e for msg in messages for e in s_one.receive(msg, 0.0)[1]]
    applies = []
    real_apply = grouped.apply
    monkeypatch.setattr(grouped, "apply", lambda batches: applies.append(len(batches)) or real_apply(batches))
    groups, start = [], 0
    for n in cuts:
        groups.append(messages[start:start + n])
        start += n
    groups.append(messages[start:])
    events_grouped = [e for g in groups if g for e in s_grouped.receive_many(g, 0.0)[1]]
    assert grouped.digest() == one.digest() and grouped.version_vector() == one.version_vector()
    assert grouped.counters == one.counters and one.counters.forged_batches == 1 and one.counters.rejected_changes == 1
    key = lambda e: (type(e).__name__, getattr(e, "origin", ""), getattr(e, "first_seq", 0), getattr(e, "seq", 0))
    assert sorted(map(key, events_grouped)) == sorted(map(key, events_one))
    for e in events_grouped:  # the per-batch counts survive the grouping
        if isinstance(e, Applied):
            assert e.changes + e.rejected == e.last_seq - e.first_seq + 1
    # One transaction per run of consecutive BATCH messages in a group (the VECTOR splits a run),
    # unless all of the run was forged.
    forged = messages[6]

    def runs(group):
        out, run = 0, []
        for msg in group + [b""]:
            if msg and isinstance(decode(msg), Batch):
                run.append(msg)
                continue
            out += any(x is not forged for x in run)
            run = []
        return out
    assert len(applies) == sum(runs(g) for g in groups if g)


def test_bad_message_after_good_batches_in_one_group() -> None:
    hall = mk(HALL2)
    messages = _mixed_messages()[:2]
    session = SyncSession(hall, HQ.node_id, 0.0)
    out, events = session.receive_many(messages + [b"\xc1 not msgpack", messages[0]], 0.0)
    assert [type(e) for e in events] == [Applied, Applied, ProtocolViolation] and session.closed
    assert hall.version_vector() == {HQ.node_id: 2}  # the two before it were applied and kept
    assert session.receive_many(messages, 0.0) == ([], [])
