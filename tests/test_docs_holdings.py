"""Which node holds which document whole: the replicated doc_holdings table (schema v3).

Real SQLite files. Checks: a node records only its own complete documents, once; others may
not write its rows (refused locally, rejected on arrival); readiness is true/false/null per
node; the v2 -> v3 migration keeps the data and replays holdings a v2 node had to refuse;
hostile holding values give a rejection, never another exception.
"""

from __future__ import annotations

import io
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.meeting import meetings as m
from meshmeet.store.batch import decode_batch, encode_batch
from meshmeet.store.errors import AuthorityError, SyncError
from meshmeet.meeting.rules import Rejection
from meshmeet.store.schema import LATEST_VERSION, current_version, specs_for
from meshmeet.meeting.replica import open_store
from meshmeet.store.db import Store

KEYS = [KeyPair.from_seed(bytes([i]) * 32) for i in range(11, 16)]
HQ, HALL1, HALL2, RELAY, STRANGER = KEYS
ROLES = {HQ.node_id: "hq", HALL1.node_id: "hall", HALL2.node_id: "hall", RELAY.node_id: "relay"}
HOLDINGS_TID = specs_for(3)["doc_holdings"].tid


def mk(key: KeyPair, path: str | Path = ":memory:", **kw) -> Store:
    return open_store(path, key, ROLES.get, clock=lambda: 1_800_000_000.0, **kw)


def sync(dst: Store, src: Store):
    return dst.apply([decode_batch(b.body, b.sig) for b in src.batches_after(dst.version_vector())])


def fetch_all(dst: Store, src: Store) -> None:
    for h in dst.wanted_chunks(10_000):
        assert dst.put_chunk(h, src.get_chunk(h)) == "stored"


def meeting_with_doc(hq: Store, size: int = 600_000) -> tuple[str, str, bytes]:
    mid = m.create_meeting(hq, "Họp")
    data = random.Random(size).randbytes(size)
    doc = m.add_document(hq, mid, io.BytesIO(data), name="to-trinh.pdf")
    return mid, doc, data


def test_node_records_its_own_complete_documents_once(tmp_path: Path) -> None:
    hq, hall = mk(HQ, tmp_path / "hq.db"), mk(HALL1, tmp_path / "hall.db")
    mid, doc, _ = meeting_with_doc(hq)
    assert m.record_holdings(hq) == ([doc], set())
    assert m.record_holdings(hq) == ([], set())  # already recorded: no second change
    sync(hall, hq)
    assert m.record_holdings(hall) == ([], {doc})  # chunks not here yet
    first = hall.wanted_chunks(1)[0]
    hall.put_chunk(first, hq.get_chunk(first))
    assert m.record_holdings(hall, {doc}) == ([], {doc})
    fetch_all(hall, hq)
    assert m.record_holdings(hall, {doc}) == ([doc], set())
    row = hall.get("doc_holdings", (doc, HALL1.node_id))
    assert row["sha256"] == hq.get("documents", doc)["sha256"]
    sync(hq, hall)
    assert hq.get("doc_holdings", (doc, HALL1.node_id)) == row
    assert hq.digest() == hall.digest()


def test_readiness_is_true_false_or_not_heard(tmp_path: Path) -> None:
    hq, h1, h2 = mk(HQ), mk(HALL1), mk(HALL2)
    mid, doc, _ = meeting_with_doc(hq)
    m.record_holdings(hq)
    nodes = [HQ.node_id, HALL1.node_id, HALL2.node_id, RELAY.node_id]
    r = m.readiness(hq, mid, nodes)
    assert r[HQ.node_id] == {"ready": True, "held": 1, "total": 1, "source": "self"}
    assert [r[n]["ready"] for n in nodes[1:]] == [None, None, None]  # nothing heard from them
    for h in (h1, h2):
        sync(h, hq)
    fetch_all(h1, hq)
    m.record_holdings(h1)
    m.checkin(h2, mid, 5)  # h2 speaks, but holds nothing yet
    sync(hq, h1)
    sync(hq, h2)
    r = m.readiness(hq, mid, nodes)
    assert (r[HALL1.node_id]["ready"], r[HALL1.node_id]["source"]) == (True, "replicated")
    assert (r[HALL2.node_id]["ready"], r[HALL2.node_id]["held"]) == (False, 0)
    assert r[RELAY.node_id]["ready"] is None and r[RELAY.node_id]["source"] == "unknown"
    # A hall sees its own state exactly, whatever the table says.
    assert m.readiness(h2, mid, [HALL2.node_id])[HALL2.node_id]["ready"] is False
    # A second document makes everyone else "not ready" until they record it.
    doc2 = m.add_document(hq, mid, io.BytesIO(b"ban-do"), name="ban-do.png")
    m.record_holdings(hq)
    r = m.readiness(hq, mid, nodes)
    assert r[HQ.node_id]["ready"] is True and r[HALL1.node_id] == {"ready": False, "held": 1, "total": 2,
                                                                    "source": "replicated"}
    assert doc2 != doc


def test_relay_records_its_own_holdings_but_nobody_writes_for_another() -> None:
    hq, relay, hall = mk(HQ), mk(RELAY), mk(HALL1)
    mid, doc, _ = meeting_with_doc(hq)
    sync(relay, hq)
    fetch_all(relay, hq)
    assert m.record_holdings(relay) == ([doc], set())
    sha = hq.get("documents", doc)["sha256"]
    for store, other in ((hall, HQ), (hq, HALL1), (relay, HALL2)):
        with pytest.raises(AuthorityError) as err:
            store.write("doc_holdings", (doc, other.node_id), {"sha256": sha, "at": 1.0})
        assert err.value.vi and "own rows" in err.value.en
    with pytest.raises(SyncError):
        hall.write("doc_holdings", (doc, HALL1.node_id), {"sha256": "not-a-digest", "at": 1.0})
    with pytest.raises(AuthorityError):
        mk(STRANGER).write("doc_holdings", (doc, STRANGER.node_id), {"sha256": sha, "at": 1.0})


def test_a_signed_holding_for_another_node_is_rejected_on_arrival() -> None:
    hq = mk(HQ)
    mid, doc, _ = meeting_with_doc(hq)
    sha = hq.get("documents", doc)["sha256"]
    forged_for = encode_batch(HALL1, 1,
                              [(1 << 40, HOLDINGS_TID, 0, (doc, HALL2.node_id), {0: sha, 1: 1.0})])
    report = hq.apply([forged_for])
    assert report.rejected_changes == 1 and report.changes_applied == 0
    assert hq.rows("doc_holdings", "node = ?", (HALL2.node_id,)) == []
    assert m.readiness(hq, mid, [HALL2.node_id])[HALL2.node_id]["ready"] is None
    # HALL1 was heard (its batch is logged) but holds nothing: false, not null.
    assert m.readiness(hq, mid, [HALL1.node_id])[HALL1.node_id]["ready"] is False


def test_migration_from_version_2_keeps_data_and_replays_holdings(tmp_path: Path) -> None:
    path = tmp_path / "hall-v2.db"
    hq = mk(HQ)
    old = mk(HALL1, path, schema_version=2)
    assert old.version == 2 and "doc_holdings" not in old.specs
    mid, doc, _ = meeting_with_doc(hq)
    sync(old, hq)
    fetch_all(old, hq)
    old_digest_rows = old.dump()["documents"]
    m.record_holdings(hq)  # a v3 change this v2 node cannot hold yet
    report = sync(old, hq)
    assert report.rejected_changes == 1
    old.close()
    conn = sqlite3.connect(path)
    assert current_version(conn) == 2
    conn.close()
    new = mk(HALL1, path)
    assert new.version == LATEST_VERSION
    assert new.dump()["documents"] == old_digest_rows and new.pending_chunks() == 0
    assert new.get("doc_holdings", (doc, HQ.node_id))["sha256"] == hq.get("documents", doc)["sha256"]
    assert m.record_holdings(new) == ([doc], set())  # the upgraded node now records its own
    sync(hq, new)
    assert new.digest() == hq.digest() and new.integrity_ok()
    conn = sqlite3.connect(path)
    assert current_version(conn) == LATEST_VERSION
    assert [r[0] for r in conn.execute("SELECT name FROM pragma_table_info('doc_holdings')")] == \
        ["doc_id", "node", "sha256", "at", "_clk", "_org"]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["hq", "hall", "relay", None]),
       st.lists(st.one_of(st.none(), st.text(max_size=70), st.integers(), st.floats(), st.binary(max_size=40)),
                max_size=3),
       st.one_of(st.text(max_size=3), st.just(HALL1.node_id)),
       st.sampled_from([0, 1, 2]))
def test_hostile_holding_changes_are_rejected_never_raise(role, values, node, op) -> None:
    rules = mk(HQ).rules
    got = rules.check(role, HALL1.node_id, HOLDINGS_TID, op, ("d1", node), dict(enumerate(values)))
    assert got is None or isinstance(got, Rejection)
    if got is None:
        assert op == 0 and node == HALL1.node_id and role is not None
        assert isinstance(values[0], str) and len(values[0]) == 64
