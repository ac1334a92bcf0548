"""Authority at merge for every table and column (docs/state.md, "Authority at merge").

The attacks of issue 12 finding 1 as signed batches (a hall renaming and ending HQ's meeting, a
ballot of a million on a closed motion), the counting rules (late ballots and ballots beyond a
hall's check-in stay stored and visible but are not counted), the v5 upgrade that re-merges
the log under the new rules, the docs table kept equal to the data, and a Hypothesis property
over tables x columns x roles x states: a batch signed by a member is applied at every replica
exactly when the table allows it, whatever the order, and the replicas end equal.
"""

from __future__ import annotations

import math
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.meeting import meetings as m
from meshmeet.meeting.authority import COLUMNS, MAX_PEOPLE, NAMESPACED, markdown_table, namespace_of, namespaced_id
from meshmeet.store.batch import OP_DELETE, OP_UPSERT, SignedBatch, decode_batch, encode_batch
from meshmeet.store.errors import AuthorityError, SyncError
from meshmeet.store.schema import ADDONLY, INTEGER, LATEST_VERSION, LWW, REAL, TABLES, TableSpec, specs_for
from meshmeet.meeting.replica import open_store
from meshmeet.store.db import Store
from meshmeet.store.schema import LATEST_VERSION

KEYS = [KeyPair.from_seed(bytes([i]) * 32) for i in range(1, 6)]
HQ, HALL1, HALL2, RELAY, STRANGER = KEYS
ROLES = {HQ.node_id: "hq", HALL1.node_id: "hall", HALL2.node_id: "hall", RELAY.node_id: "relay"}
SPECS = specs_for(5)
T0 = 1_800_000_000.0
DOCS = Path(__file__).resolve().parents[1] / "docs"


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def mk(key: KeyPair, path: str | Path = ":memory:", **kw) -> Store:
    return open_store(path, key, ROLES.get, clock=kw.pop("clock", None) or Clock(), **kw)


def logged(store: Store, after: dict | None = None) -> list[SignedBatch]:
    return [decode_batch(b.body, b.sig) for b in store.batches_after(after or {})]


def signed(key: KeyPair, seq: int, changes: list[tuple]) -> SignedBatch:
    """A batch as a protocol-aware attacker builds it: (table id, op, key, {column index: value})."""
    base = int((T0 + 60) * 1000) << 16  # a minute after the honest writes: newer, so it would win a merge
    b = encode_batch(key, seq, [(base + i, tid, op, k, v) for i, (tid, op, k, v) in enumerate(changes)])
    return decode_batch(b.body, b.sig)


def col(table: str, name: str) -> int:
    return [c.name for c in SPECS[table].columns].index(name)


def commune() -> tuple[Store, Store, str, str]:
    """HQ with a meeting and an open motion; hall 1 checked in 30 and voted; both synced."""
    hq, hall = mk(HQ), mk(HALL1)
    mid = m.create_meeting(hq, "Họp toàn xã")
    motion = m.open_motion(hq, mid, "Làm đường")
    hall.apply(logged(hq))
    m.checkin(hall, mid, 30)
    m.vote(hall, motion, "yes", count=20)
    hq.apply(logged(hall))
    return hq, hall, mid, motion


# ------------------------------------------------------------------ the attacks of finding 1
def test_hall_signed_rename_and_end_of_hq_meeting_is_refused_everywhere() -> None:
    hq, hall, mid, _ = commune()
    other = mk(HALL2)
    other.apply(logged(hq))
    seq = hall.version_vector()[HALL1.node_id] + 1
    attack = signed(HALL1, seq, [(2, OP_UPSERT, (mid,), {col("meetings", "title"): "Đã hủy",
                                                        col("meetings", "status"): "ended"}),
                                 (2, OP_UPSERT, (mid,), {col("meetings", "title"): "Đã hủy"}),
                                 (2, OP_UPSERT, (mid,), {col("meetings", "status"): "ended"})])
    for replica in (hq, other):
        before = replica.digest()
        report = replica.apply([attack])
        assert report.rejected_changes == 3 and report.changes_applied == 0
        assert replica.get("meetings", mid)["title"] == "Họp toàn xã"
        assert replica.get("meetings", mid)["status"] == "scheduled"
        assert replica.digest() == before
    assert hq.digest() == other.digest()


def test_ballot_of_a_million_on_a_closed_motion_is_refused_and_a_late_one_not_counted() -> None:
    hq, hall, mid, motion = commune()
    closed = m.close_motion(hq, motion)
    assert (closed["yes"], closed["turnout"], closed["present"]) == (20, 20, 30)
    other = mk(HALL2)
    other.apply(logged(hq))
    seq = hall.version_vector()[HALL1.node_id] + 1
    million = signed(HALL1, seq, [(7, OP_UPSERT, (motion, HALL1.node_id, "#no"), {0: "no", 1: 1_000_000, 2: T0})])
    late = signed(HALL1, seq + 1, [(7, OP_UPSERT, (motion, HALL1.node_id, "#abstain"), {0: "abstain", 1: 5, 2: T0})])
    for replica in (hq, other):
        assert replica.apply([million]).rejected_changes == 1
        assert replica.apply([late]).changes_applied == 1  # well formed: kept, visible, not counted
        t = m.tally(replica, motion)
        assert (t["yes"], t["no"], t["abstain"], t["turnout"], t["present"], t["passed"]) == (20, 0, 0, 20, 30, True)
        assert [(u["voter"], u["count"], u["reason"]) for u in t["uncounted"]] == [("#abstain", 5, "late")]
    assert hq.digest() == other.digest()


def test_ballots_beyond_a_halls_check_in_are_not_counted() -> None:
    hq, hall, mid, motion = commune()  # hall 1: 30 present, 20 yes
    over = signed(HALL2, 1, [(5, OP_UPSERT, ("c2",), {0: mid, 1: HALL2.node_id, 2: 5, 3: T0}),
                             (7, OP_UPSERT, (motion, HALL2.node_id, "#no"), {0: "no", 1: 11, 2: T0 + 1})])
    assert hq.apply([over]).changes_applied == 2
    t = m.tally(hq, motion)
    assert (t["yes"], t["no"], t["turnout"], t["present"]) == (20, 0, 20, 35)
    assert [(u["node"], u["voter"], u["reason"]) for u in t["uncounted"]] == [(HALL2.node_id, "#no", "over_checkin")]
    with pytest.raises(SyncError, match="check-in"):  # honest writers are told before they write
        m.vote(hall, motion, "no", count=11)
    m.vote(hall, motion, "no", count=10)
    record = m.close_motion(hq, motion)
    assert record["counted"] == {HALL1.node_id: {"#yes": ["yes", 20]}}  # the hall's 10 had not arrived
    assert record["over"] == {HALL2.node_id: ["#no"]}
    hq.apply(logged(hall))
    t = m.tally(hq, motion)
    assert (t["yes"], t["no"]) == (20, 0)
    assert sorted((u["node"], u["reason"]) for u in t["uncounted"]) == sorted(
        [(HALL2.node_id, "over_checkin"), (HALL1.node_id, "late")])


def test_a_hall_cannot_rewrite_a_counted_ballot_after_the_close() -> None:
    """Add-only keeps a key's earliest add, and a hall signs its own clocks: re-adding its counted
    ballot with an earlier clock replaces the row everywhere, but HQ's close record still counts."""
    hq, hall, mid, motion = commune()
    m.close_motion(hq, motion)
    early = encode_batch(HALL1, hall.version_vector()[HALL1.node_id] + 1,
                         [(1 << 40, 7, OP_UPSERT, (motion, HALL1.node_id, "#yes"), {0: "yes", 1: 30, 2: T0})])
    assert hq.apply([decode_batch(early.body, early.sig)]).changes_applied == 1
    assert hq.get("ballots", (motion, HALL1.node_id, "#yes"))["count"] == 30  # the row did change
    t = m.tally(hq, motion)
    assert (t["yes"], t["turnout"], t["per_node"]) == (20, 20, {HALL1.node_id: {"yes": 20, "no": 0, "abstain": 0}})
    assert [(u["count"], u["reason"]) for u in t["uncounted"]] == [(30, "changed")]


def test_hq_close_record_decides_at_every_replica_whatever_the_order() -> None:
    """A partition: hall 2 votes while cut off, HQ closes first; every order gives the same count."""
    hq, hall, mid, motion = commune()
    cut_off = mk(HALL2)
    cut_off.apply(logged(hq))
    m.checkin(cut_off, mid, 10)
    m.vote(cut_off, motion, "no", count=10)
    m.close_motion(hq, motion)
    batches = logged(hq) + logged(cut_off) + logged(hall)
    replicas = [mk(RELAY), mk(RELAY), mk(RELAY)]
    for i, replica in enumerate(replicas):
        order = batches[i:] + batches[:i]
        for b in (order if i < 2 else reversed(order)):
            replica.apply([b])
    assert len({r.digest() for r in replicas}) == 1
    tallies = [m.tally(r, motion) for r in replicas]
    assert all(t == tallies[0] for t in tallies)
    assert (tallies[0]["yes"], tallies[0]["no"], tallies[0]["present"]) == (20, 0, 30)
    assert [(u["node"], u["reason"]) for u in tallies[0]["uncounted"]] == [(HALL2.node_id, "late")]


def test_a_hall_changes_only_its_own_meeting_and_never_a_status() -> None:
    hq, hall = mk(HQ), mk(HALL1)
    own = m.create_meeting(hall, "Họp thôn")
    assert namespace_of(own) == HALL1.node_id and hall.get("meetings", own)["status"] is None
    hall.write("meetings", own, {"title": "Họp thôn 1", "location": "Nhà văn hóa"})
    with pytest.raises(AuthorityError):
        hall.write("meetings", own, {"status": "started"})
    with pytest.raises(AuthorityError):
        hall.write("meetings", own, {"created_by": HALL2.node_id})
    hq_meeting = m.create_meeting(hq, "Họp xã")
    with pytest.raises(AuthorityError):
        hall.write("meetings", hq_meeting, {"title": "x"})
    with pytest.raises(AuthorityError):  # another hall's namespace
        hall.write("meetings", namespaced_id("0" * 16, HALL2.node_id), {"title": "x"})
    hq.apply(logged(hall))
    hq.write("meetings", own, {"status": "started"})  # HQ may set any meeting's status
    assert hq.get("meetings", own) == {**hall.get("meetings", own), "status": "started"}


@pytest.mark.parametrize("table,name,value", [
    ("attendance", "present", MAX_PEOPLE + 1), ("attendance", "present", -1), ("attendance", "at", math.nan),
    ("ballots", "count", 0), ("ballots", "count", MAX_PEOPLE + 1), ("ballots", "at", math.inf),
    ("chat", "at", -1.0), ("feedback", "at", 1e12),
])
def test_every_number_has_a_range(table: str, name: str, value) -> None:
    hall = mk(HALL1)
    row = {"attendance": {"meeting_id": "m", "node": HALL1.node_id, "present": 3, "at": T0},
           "ballots": {"choice": "yes", "count": 3, "at": T0},
           "chat": {"meeting_id": "m", "node": HALL1.node_id, "text": "x", "at": T0},
           "feedback": {"node": HALL1.node_id, "meeting_id": None, "text": "x", "at": T0}}[table]
    key = ("mo", HALL1.node_id, "#yes") if table == "ballots" else "k1"
    with pytest.raises(SyncError):
        hall.write(table, key, {**row, name: value})
    hall.write(table, key, row)  # in range: fine
    assert hall.change_count() == 1


def test_every_column_has_a_rule_and_every_number_a_range() -> None:
    for spec in TABLES:
        assert set(COLUMNS[spec.name]) == {c.name for c in spec.columns}, spec.name
        for c in spec.columns:
            rule = COLUMNS[spec.name][c.name]
            assert rule.roles <= spec.writers, (spec.name, c.name)
            if c.type in (INTEGER, REAL):
                assert rule.low is not None and rule.high is not None, (spec.name, c.name)


def test_docs_state_md_holds_the_authority_table() -> None:
    assert markdown_table() in (DOCS / "state.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------ upgrade from v4
def test_v4_rows_the_new_rules_refuse_disappear_on_upgrade(tmp_path: Path) -> None:
    """A v4 node applied the forged rename (the old rules allowed it); v5 re-merges its log."""
    hq, hall, mid, motion = commune()
    path = tmp_path / "old.db"
    old = mk(HALL2, path, schema_version=4)
    old.apply(logged(hq))
    attack = signed(HALL1, hall.version_vector()[HALL1.node_id] + 1,
                    [(2, OP_UPSERT, (mid,), {col("meetings", "title"): "Đã hủy"})])
    old.apply([attack])
    old._conn.execute("UPDATE meetings SET title='Đã hủy'")  # what the v4 rules let in
    old.close()
    new = mk(HALL2, path)
    assert new.version == LATEST_VERSION and new.get("meetings", mid)["title"] == "Họp toàn xã"
    reference = mk(HALL2)
    reference.apply(logged(hq) + [attack])
    assert new.digest() == reference.digest() and new.integrity_ok()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM local_state WHERE name='replay_log'").fetchone() == (0,)


# ------------------------------------------------------------------ the property
ROLE_KEYS = [HQ, HQ, HALL1, HALL1, HALL1, RELAY, STRANGER]
OTHERS = [HQ.node_id, HALL1.node_id, HALL2.node_id]
BAD_NUMBERS = [-1, MAX_PEOPLE + 1, 2, 10**13, math.nan, math.inf, -0.5]


def allowed(role: str | None, origin: str, spec: TableSpec, op: int, key: tuple, values: dict[str, object]) -> bool:
    """The authority table read plainly: may `origin` (with `role`) make this change?"""
    if role is None or role not in spec.writers:
        return False
    if op == OP_DELETE:
        return spec.kind == LWW and role == "hq" and not values
    if not values or (spec.kind == ADDONLY and set(values) != {c.name for c in spec.columns}):
        return False
    types = {c.name: c.type for c in spec.columns}
    for name, v in values.items():
        rule = COLUMNS[spec.name][name]
        if role not in rule.roles:
            return False
        if v is None:
            if rule.required:
                return False
            continue
        if not (type(v) is types[name] or (types[name] is float and type(v) is int)):
            return False
        if rule.choices is not None:
            if v not in (rule.hall_choices if role != "hq" and rule.hall_choices else rule.choices):
                return False
        if rule.low is not None and not (math.isfinite(v) and rule.low <= v <= rule.high):
            return False
        if rule.self_only and v != origin:
            return False
        if rule.hex_chars and not re.fullmatch(f"[0-9a-f]{{{rule.hex_chars}}}", v):
            return False
    if spec.owner is not None:
        owner = key[spec.pk.index(spec.owner)] if spec.owner in spec.pk else values.get(spec.owner)
        if owner != origin and not (role == "hq" and spec.hq_may_write_for_others):
            return False
    if spec.name in NAMESPACED and role != "hq":
        if not key[spec.pk.index(NAMESPACED[spec.name])].endswith("-" + origin):
            return False
    if spec.name == "ballots":
        voter = key[2]
        if voter.startswith("#"):
            return voter == "#" + values["choice"]
        return voter.startswith("@") and 1 < len(voter) <= 65 and values["count"] == 1
    return True


def good_value(spec: TableSpec, name: str, origin: str, role: str | None):
    rule, kind = COLUMNS[spec.name][name], {c.name: c.type for c in spec.columns}[name]
    if rule.choices is not None:
        return st.sampled_from(sorted(rule.hall_choices if role != "hq" and rule.hall_choices else rule.choices))
    if rule.self_only:
        return st.just(origin)
    if rule.hex_chars:
        return st.text("0123456789abcdef", min_size=rule.hex_chars, max_size=rule.hex_chars)
    if rule.low is not None:
        if kind is int:
            return st.integers(int(rule.low), int(min(rule.high, 50)))
        return st.floats(rule.low, rule.high)
    return st.binary(max_size=4) if kind is bytes else st.text(max_size=6)


def bad_value(spec: TableSpec, name: str):
    kind = {c.name: c.type for c in spec.columns}[name]
    return st.one_of(st.none(), st.sampled_from(BAD_NUMBERS if kind in (int, float) else ["bogus", "", b"x", 7]),
                     st.sampled_from(OTHERS + ["started", "closed", "speaking", "yes"]))


@st.composite
def changes(draw, key: KeyPair):
    """1-3 changes by `key`'s node to one table with one column set (so they travel as one run)."""
    spec = draw(st.sampled_from(list(SPECS.values())))
    role, origin = ROLES.get(key.node_id), key.node_id
    op = draw(st.sampled_from([OP_UPSERT] * 5 + [OP_DELETE]))
    names = [c.name for c in spec.columns]
    if op == OP_UPSERT and spec.kind == LWW:
        names = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    sloppy = draw(st.booleans())  # else every value is one the column may hold: authority decides alone
    out = []
    for _ in range(draw(st.integers(1, 3))):
        key_parts = []
        for part in spec.pk:  # not sloppy: the key is one the writer may use, except for its role
            if part == "node":
                key_parts.append(draw(st.sampled_from([origin, HALL2.node_id])) if sloppy else origin)
            elif spec.name in NAMESPACED:
                mine = namespaced_id("1" * 16, origin)
                key_parts.append(draw(st.sampled_from(["m1", mine, namespaced_id("2" * 16, HALL2.node_id)]))
                                 if sloppy else mine)
            elif part == "motion_id":
                key_parts.append(draw(st.sampled_from(["MOTION", "other-motion"])) if sloppy else "MOTION")
            elif part == "voter":
                key_parts.append(draw(st.sampled_from(["#yes", "#no", "#abstain", "@Ba"] +
                                                      (["ba", "@" + "x" * 70] if sloppy else []))))
            else:
                key_parts.append(draw(st.sampled_from(["k1", "k2", "k3"])))
        values = {} if op == OP_DELETE else {
            n: draw(st.one_of(good_value(spec, n, origin, role), bad_value(spec, n)) if sloppy
                    else good_value(spec, n, origin, role)) for n in names}
        if spec.name == "ballots" and values and not sloppy:
            if key_parts[2].startswith("#"):
                values["choice"] = key_parts[2][1:]
            else:
                values["count"] = 1
        out.append((spec, op, tuple(key_parts), values))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # ~18 s in CI
@given(st.sampled_from(ROLE_KEYS).flatmap(lambda k: st.tuples(st.just(k), changes(k))),
       st.sampled_from(["open", "closed"]), st.permutations(range(4)), st.permutations(range(4)))
def test_a_signed_batch_applies_exactly_when_the_table_allows_and_replicas_agree(drawn, state, order1, order2) -> None:
    key, planned = drawn
    hq_w, hall_w = mk(HQ), mk(HALL1)
    mid = m.create_meeting(hq_w, "Họp")
    motion = m.open_motion(hq_w, mid, "Biểu quyết")
    own = m.create_meeting(hall_w, "Họp thôn")
    hall_w.apply(logged(hq_w))
    m.checkin(hall_w, mid, 50)
    setup = [logged(hq_w), logged(hall_w, hq_w.version_vector())]
    hq_w.apply(setup[1])
    entries = [(spec.tid, op, tuple(motion if p == "MOTION" else p for p in k),
                {[c.name for c in spec.columns].index(n): v for n, v in values.items()})
               for spec, op, k, values in planned]
    mark = hq_w.version_vector()
    if state == "closed":  # HQ closes before the batch reaches it
        m.close_motion(hq_w, motion)
    held = {HQ.node_id: hq_w.version_vector()[HQ.node_id], HALL1.node_id: hall_w.version_vector()[HALL1.node_id]}
    attack = signed(key, held.get(key.node_id, 0) + 1, entries)
    if state == "open":  # HQ holds the batch when it closes
        hq_w.apply([attack])
        m.close_motion(hq_w, motion)
    close = [b for b in logged(hq_w, mark) if (b.origin, b.first_seq) != (attack.origin, attack.first_seq)]
    deliveries = [setup[0], setup[1], close, [attack]]
    expected = [allowed(ROLES.get(key.node_id), key.node_id, SPECS[s.name], op, e[2],
                        {n: v for n, v in values.items()})
                for (s, op, _k, values), e in zip(planned, entries)]
    for (spec, _op, _k, _v), ok in zip(planned, expected):
        event(f"{spec.name}: {'applied' if ok else 'refused'} ({ROLES.get(key.node_id)})")
    replicas = [mk(HQ), mk(HALL2), mk(RELAY)]
    for replica, order in zip(replicas, (range(4), order1, order2)):
        for i in order:
            report = replica.apply(deliveries[i])
            if i == 3:
                assert report.changes_applied == sum(expected), (expected, report.rejections)
                assert report.rejected_changes == len(expected) - sum(expected)
    assert len({r.digest() for r in replicas}) == 1
    tallies = [m.tally(r, motion) for r in replicas]
    assert all(t == tallies[0] for t in tallies)
    reasons = {(u["node"], u["voter"]): u["reason"] for u in tallies[0]["uncounted"]}
    for (spec, op, k, values), e, ok in zip(planned, entries, expected):
        if spec.name == "ballots" and ok and e[2][0] == motion:
            if state == "closed":  # cast after the close: stored and visible, never counted
                assert reasons[(key.node_id, e[2][2])] == "late"
            else:  # HQ held it when it closed: counted, unless beyond the node's check-in
                assert reasons.get((key.node_id, e[2][2])) in (None, "over_checkin")
    assert own and replicas[0].integrity_ok()


def test_minutes_show_uncounted_ballots_and_keep_other_records_unchanged() -> None:
    from meshmeet.web.app.minutes import minutes_record
    hq, hall, mid, motion = commune()
    m.close_motion(hq, motion)
    late = signed(HALL1, hall.version_vector()[HALL1.node_id] + 1,
                  [(7, OP_UPSERT, (motion, HALL1.node_id, "#no"), {0: "no", 1: 4, 2: T0})])
    hq.apply([late])
    motions = [{**mo, "tally": m.tally(hq, mo["id"])} for mo in hq.rows("motions")]
    answer = {"meeting": hq.get("meetings", mid), "agenda": [], "attendance": {"per_hall": []}, "motions": motions}
    record = minutes_record(answer, [], {HALL1.node_id: "Thôn 1"})
    [shown] = record["motions"]
    assert shown["result"]["no"] == 0 and shown["result"]["yes"] == 20
    assert shown["uncounted"] == [{"site": "Thôn 1", "voter": "#no", "choice": "no", "count": 4, "reason": "late"}]
    quiet = minutes_record({**answer, "motions": [{**motions[0], "tally": {**motions[0]["tally"], "uncounted": []}}]},
                           [], {})
    assert "uncounted" not in quiet["motions"][0]
