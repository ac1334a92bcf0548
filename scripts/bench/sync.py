"""Benchmark of the replicated store and sync protocol (issue 3).

Measures, in one run:
- apply (9 runs, each right after a baseline run; the pair with the median ratio is reported,
  best-of-9 of each side and CPU-time ratios too): 100,000 changes (agenda items) received
  from a peer as signed batches, fed through SyncSession.receive_many in groups of 16 messages
  as the node's driver passes what is waiting when apply is the bottleneck (decode, Ed25519
  verify, authority check, merge, change log; one transaction per group) into a SQLite file
  in WAL mode; baseline: plain sqlite3 executemany inserting the same rows
  into a table of the same columns, same pragmas, same disk, same run.
- wire bytes per value byte: BATCH message bytes on the wire / bytes of the values they carry
  (text as UTF-8, blobs as is, numbers 8 bytes, NULL 0).
- converge: 20 in-memory replicas in two partitions of 10, each side with 10,000 changes
  of its own (HQ agenda items on one side, a hall's chat on the other), already spread within
  each side; time from healing the partition until every replica holds the same state.
- in-sync check: bytes each way when two replicas that already agree connect.
Prints a table; with --json prints the JSON object the issue asks for (plus a few keys).
This script must never run longer than 3 minutes on the project machine.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from meshmeet.membership.identity import KeyPair  # noqa: E402
from meshmeet.node.sync_service import RECEIVE_GROUP_MAX_MESSAGES  # noqa: E402
from meshmeet.store.batch import decode_batch  # noqa: E402
from meshmeet.sync.messages import Batch, encode  # noqa: E402
from meshmeet.sync.events import InSync  # noqa: E402
from meshmeet.sync.session import SyncSession  # noqa: E402
from meshmeet.sync.sim import SimNet  # noqa: E402
from meshmeet.meeting.replica import open_store  # noqa: E402
from meshmeet.store.db import Store  # noqa: E402

APPLY_CHANGES = 100_000
SIDE_CHANGES = 10_000
REPLICAS = 20
REPEATS = 9  # baseline/apply pairs: the machine is shared and noisy
TITLE = "Mục {i}: Báo cáo tình hình thực hiện nhiệm vụ phát triển kinh tế - xã hội quý {q}"
CHAT = "Điểm cầu thôn {i} đã sẵn sàng, âm thanh rõ, đề nghị trung tâm cho phát biểu"


def value_bytes(values: dict) -> int:
    total = 0
    for v in values.values():
        if isinstance(v, str):
            total += len(v.encode())
        elif isinstance(v, bytes):
            total += len(v)
        elif v is not None:
            total += 8
    return total


def make_source(key: KeyPair, roles, n: int) -> tuple[Store, list[tuple]]:
    src = open_store(":memory:", key, roles.get)
    rows = []
    with src.batch():
        src.write("meetings", "m0000000000000001", {"title": "Hội nghị", "status": "scheduled"})
        for i in range(n):
            row = (f"{i:016x}", "m0000000000000001", i, TITLE.format(i=i, q=i % 4 + 1), "pending")
            src.write("agenda_items", row[0], {"meeting_id": row[1], "position": row[2], "title": row[3],
                                               "status": row[4]})
            rows.append(row)
    return src, rows


def bench_apply(tmp: Path) -> dict:
    hq, hall = KeyPair.generate(), KeyPair.generate()
    roles = {hq.node_id: "hq", hall.node_id: "hall"}
    src, rows = make_source(hq, roles, APPLY_CHANGES)
    messages = [encode(Batch(b.body, b.sig)) for b in src.batches_after({})]
    wire = sum(len(m) for m in messages)
    values = sum(value_bytes(c.values) for b in src.batches_after({})
                 for c in decode_batch(b.body, b.sig, check_signature=False).changes())

    # Baseline: the physical limit, plain executemany into the same columns. The two run
    # back to back, REPEATS times. The headline is the pair with the median ratio: on this
    # shared machine slow spells come and go, and the shorter baseline (0.25-0.45 s) fits in a
    # quiet spell more often than the apply (0.45-0.85 s), so a best-of-N of each side alone
    # mostly measures luck (0.47-0.62 over three runs of one commit; pairs: 0.52-0.56).
    pairs: list[tuple[float, float]] = []  # (plain s, apply s)
    cpu: list[tuple[float, float]] = []
    for rep in range(REPEATS):
        conn = sqlite3.connect(tmp / f"plain{rep}.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE agenda_items (id TEXT PRIMARY KEY NOT NULL, meeting_id TEXT, "
                     "position INTEGER, title TEXT, status TEXT)")
        t0, c0 = time.perf_counter(), time.process_time()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO agenda_items VALUES (?,?,?,?,?)", rows)
        conn.execute("COMMIT")
        plain_s, plain_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        conn.close()

        dst = open_store(tmp / f"hall{rep}.db", hall, roles.get)
        session = SyncSession(dst, hq.node_id, 0.0)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(messages), RECEIVE_GROUP_MAX_MESSAGES):  # as the node's driver does
            session.receive_many(messages[i:i + RECEIVE_GROUP_MAX_MESSAGES], 0.0)
        pairs.append((plain_s, time.perf_counter() - t0))
        cpu.append((plain_cpu_s, time.process_time() - c0))
        assert len(dst.rows("agenda_items")) == APPLY_CHANGES and dst.digest() == src.digest()
        dst.close()

    def rate(plain_s: float, apply_s: float) -> tuple[float, float]:
        return (APPLY_CHANGES + 1) / apply_s, APPLY_CHANGES / plain_s

    def ratio(pair: tuple[float, float]) -> float:
        apply_rate, plain_rate = rate(*pair)
        return apply_rate / plain_rate

    apply_rate, plain_rate = rate(*sorted(pairs, key=ratio)[len(pairs) // 2])
    best_apply, best_plain = rate(min(p for p, _ in pairs), min(a for _, a in pairs))
    cpu_apply, cpu_plain = rate(min(p for p, _ in cpu), min(a for _, a in cpu))
    return {
        "apply_rows_per_s": round(apply_rate),
        "sqlite_insert_rows_per_s": round(plain_rate),
        "apply_vs_insert": round(apply_rate / plain_rate, 3),
        "pair_ratios": sorted(round(ratio(p), 3) for p in pairs),
        "best_apply_rows_per_s": round(best_apply),
        "best_sqlite_insert_rows_per_s": round(best_plain),
        "apply_vs_insert_best_of_each": round(best_apply / best_plain, 3),
        "apply_vs_insert_cpu": round(cpu_apply / cpu_plain, 3),
        "wire_bytes_per_value_byte": round(wire / values, 3),
        "apply_batches": len(messages),
        "wire_bytes_per_change": round(wire / (APPLY_CHANGES + 1), 1),
    }


def bench_converge() -> dict:
    keys = [KeyPair.generate() for _ in range(REPLICAS)]
    roles = {k.node_id: "hall" for k in keys}
    roles[keys[0].node_id] = "hq"
    stores = [open_store(":memory:", k, roles.get) for k in keys]
    net = SimNet(stores)
    half = REPLICAS // 2
    for side in (range(0, half), range(half, REPLICAS)):
        first = side[0]
        for i in side[1:]:
            net.connect(first + (i - first - 1) // 2, i)  # a binary tree per side
    with stores[0].batch():
        stores[0].write("meetings", "m0000000000000001", {"title": "Hội nghị", "status": "scheduled"})
        for i in range(SIDE_CHANGES - 1):
            stores[0].write("agenda_items", f"{i:016x}", {"meeting_id": "m0000000000000001", "position": i,
                                                          "title": TITLE.format(i=i, q=1), "status": "pending"})
    with stores[half].batch():
        for i in range(SIDE_CHANGES):
            stores[half].write("chat", f"c{i:015x}", {"meeting_id": "m0000000000000001", "node": keys[half].node_id,
                                                      "text": CHAT.format(i=i), "at": 1.0 + i})
    net.changed(0)
    net.changed(half)
    net.run()
    assert len({s.digest() for s in stores[:half]}) == 1 and len({s.digest() for s in stores[half:]}) == 1
    assert stores[0].digest() != stores[half].digest()
    wire0 = net.wire_bytes
    t0 = time.perf_counter()
    net.connect(0, half)
    net.run()
    converge_s = time.perf_counter() - t0
    digests = {s.digest() for s in stores}
    assert len(digests) == 1, "replicas did not converge"

    a, b = SyncSession(stores[3], keys[15].node_id, 0.0), SyncSession(stores[15], keys[3].node_id, 0.0)
    ha, hb = a.on_connect(), b.on_connect()
    out_a, ev_a = a.receive(hb[0].data, 0.0)
    out_b, ev_b = b.receive(ha[0].data, 0.0)
    assert ev_a == [InSync()] and ev_b == [InSync()] and not out_a and not out_b
    return {
        "converge_20_replicas_s": round(converge_s, 3),
        "converge_wire_bytes": net.wire_bytes - wire0,
        "in_sync_check_bytes": max(sum(len(o.data) for o in ha), sum(len(o.data) for o in hb)),
        "in_sync_round_trips": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON result only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = bench_apply(Path(tmp))
    result.update(bench_converge())
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'measure':<38}{'value':>14}  goal / baseline")
    print(f"{'apply 100k changes from a peer':<38}{result['apply_rows_per_s']:>12,} /s  "
          f">= 50% of plain insert: {result['apply_vs_insert']:.0%} (median of {REPEATS} pairs; "
          f"best of each {result['apply_vs_insert_best_of_each']:.0%}, CPU time {result['apply_vs_insert_cpu']:.0%})")
    print(f"{'plain SQLite executemany (baseline)':<38}{result['sqlite_insert_rows_per_s']:>12,} /s  "
          f"pair ratios {' '.join(f'{r:.2f}' for r in result['pair_ratios'])}")
    print(f"{'wire bytes per value byte':<38}{result['wire_bytes_per_value_byte']:>14.3f}  < 1.3 "
          f"({result['wire_bytes_per_change']} B per change)")
    print(f"{'20 replicas converge after partition':<38}{result['converge_20_replicas_s']:>12.2f} s  "
          f"10,000 changes each side, {result['converge_wire_bytes']:,} B on the wire")
    print(f"{'in-sync check, bytes each way':<38}{result['in_sync_check_bytes']:>14}  < 64, one round trip "
          f"(Negentropy: 323)")


if __name__ == "__main__":
    main()
