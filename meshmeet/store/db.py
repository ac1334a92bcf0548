"""The replicated store of one node: one SQLite file (WAL), its transactions and change log.

Every replicated write goes through `Store.write` (or the helpers in meetings.py built on
it): the change is checked against the node's own role, merged into its table and appended
to the change log as part of a signed batch, all in one transaction. Batches received from
peers go through `Store.apply`, which checks each change's authority against the roster at
this node and hands the changes that pass to the merge (merge.py: LWW per column by HLC,
add-only sets, tombstones, by the rules in docs/state.md), so that any arrival order gives
the same state. The store also holds the content-addressed document chunks (methods in
chunkstore.py), and answers reads (reads.py). A full disk rolls the whole transaction back and raises DiskFull
(meshmeet/store/diskfull.py): a received batch is then not held, so it is asked for again. This
module must never do network I/O, never apply a change whose origin lacks authority, and
never leave a write half done (transactions).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Any, Callable, Iterable, Iterator, Sequence

import msgpack
import sqlite_utils

from .diskfull import DiskFull, is_disk_full
from ..membership.identity import KeyPair
from .batch import MAX_BATCH_CHANGES, OPS, Entry, SignedBatch, decode_batch, encode_batch
from .chunkstore import ChunkStore
from .reads import StoreReads
from .errors import AuthorityError, SyncError
from .hlc import HybridClock
from .merge import Merger, MergeItem
from .errors import Rejection
from .rules_port import RulesFor
from .schema import LATEST_VERSION, REPLAY_FLAG, TableSpec, migrate, specs_for

log = logging.getLogger(__name__)

Authority = Callable[[str], "str | None"]
LOCAL_BATCH_BYTES = 60_000  # changes per batch body, so a BATCH fits one link message (64 KiB)
CHANGE_HEADER_BYTES = 12     # worst case for the HLC delta and table/op integers of one change
# An origin's version vector entry after logging batches: walk from the entry held through the
# logged batches that continue it with no gap (first_seq = previous last_seq + 1).
_ADVANCE_VECTOR_SQL = """
WITH RECURSIVE held(seq) AS (
    SELECT coalesce((SELECT seq FROM version_vector WHERE origin = :origin), 0)
    UNION ALL
    SELECT c.last_seq FROM changelog AS c, held WHERE c.origin = :origin AND c.first_seq = held.seq + 1)
INSERT INTO version_vector (origin, seq) SELECT :origin, max(seq) FROM held WHERE true
ON CONFLICT(origin) DO UPDATE SET seq = excluded.seq"""


@dataclass
class ApplyReport:
    """What `Store.apply` did with the batches it was given."""

    changes_applied: int = 0
    duplicate_batches: int = 0
    conflicting_batches: int = 0
    rejected_changes: int = 0
    rejections: list[tuple[str, int, Rejection]] = field(default_factory=list)
    tables_touched: set[str] = field(default_factory=set)
    applied: list[tuple[str, int, int]] = field(default_factory=list)  # (origin, first, last) of each new batch

    @property
    def batches_applied(self) -> int:
        return len(self.applied)


@dataclass
class Counters:
    """Running totals kept in the store's file (shown in status)."""

    rejected_changes: int = 0
    forged_batches: int = 0
    duplicate_batches: int = 0
    conflicting_batches: int = 0
    corrupt_chunks: int = 0


def _clock_bytes(hlc: int, origin_raw: bytes) -> bytes:
    return hlc.to_bytes(8, "big") + origin_raw


def _origin_raw(origin: str) -> bytes:
    try:
        return bytes.fromhex(origin)
    except ValueError:
        return origin.encode()


def _run_items(run: Any, origin_raw: bytes) -> Iterator[tuple]:
    """A run's changes as merge items (table id, op, key, values, clock)."""
    return ((e[1], e[2], e[3], e[4], _clock_bytes(e[0], origin_raw)) for e in run.entries())


class Store(StoreReads, ChunkStore):
    """One node's replicated store."""

    def __init__(self, path: str | Path, key: KeyPair, authority: Authority, *, rules: RulesFor,
                 clock: Callable[[], float] = time.time, schema_version: int = LATEST_VERSION,
                 exclusive: bool = False) -> None:
        """`rules`: the rules every change must pass, for the opened schema's tables
        (meshmeet.meeting.open_store gives the meeting's). `exclusive`: for this connection alone,
        with the WAL index in memory instead of in PATH-shm (which cannot be made on a full disk)."""
        self.path = str(path)
        self.key = key
        self.node_id = key.node_id
        self.authority = authority
        self.clock = clock
        self.counters = Counters()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            if exclusive:
                self._conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error:
            self._conn.close()
            raise
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self.db = sqlite_utils.Database(self._conn)
        before, self.version = migrate(self._conn, schema_version)
        self.specs: dict[str, TableSpec] = specs_for(self.version)
        self.rules = rules(self.specs)
        self._col_index = {n: {c.name: i for i, c in enumerate(s.columns)} for n, s in self.specs.items()}
        self._depth = 0
        self._pending: list[Entry] | None = None
        self._pending_bytes = 0
        # how changes become rows; from schema v4 clocks are stored as (HLC, origin number)
        self._merger = Merger(self._conn, self.rules, int_clocks=self.version >= 4)
        row = self._conn.execute("SELECT max(max_hlc) FROM changelog").fetchone()
        self.hlc = HybridClock(row[0] or 0)
        self._next_seq = self._own_max_seq() + 1
        self._load_counters()
        replay = self._conn.execute("SELECT value FROM local_state WHERE name=?", (REPLAY_FLAG,)).fetchone()
        if 0 < before < self.version or replay:
            self._replay()

    def _load_counters(self) -> None:
        for name, value in self._conn.execute("SELECT name, value FROM local_state"):
            if name in Counters.__dataclass_fields__:
                setattr(self.counters, name, value)

    # ----------------------------------------------------------------- transactions
    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        committed = False
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                self._conn.execute("COMMIT")
                committed = True
            finally:
                self._depth = 0
                if not committed:
                    self._rolled_back()
        except Exception as exc:
            if is_disk_full(exc) and not isinstance(exc, DiskFull):
                raise DiskFull() from exc
            raise

    def _rolled_back(self) -> None:
        """Undo a failed transaction whole, and what this object derived from it."""
        if self._conn.in_transaction:  # SQLite may have rolled back by itself (SQLITE_FULL, SQLITE_IOERR)
            self._conn.execute("ROLLBACK")
        self._merger.load_origins()  # origin numbers taken in the rolled-back transaction are gone
        self._next_seq = self._own_max_seq() + 1  # local batches of that transaction were not logged
        self._load_counters()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group local writes: one transaction, signed batches of up to MAX_BATCH_CHANGES."""
        if self._pending is not None:
            yield
            return
        with self._tx():
            self._pending = []
            self._pending_bytes = 0
            try:
                yield
                self._flush()
            finally:
                self._pending = None

    # ----------------------------------------------------------------- local writes
    def write(self, table: str, key: Any, values: dict[str, Any] | None = None, op: str = "upsert") -> int:
        """Record one local change; returns its sequence number. Raises AuthorityError/SyncError."""
        return self.write_many(table, [(key, values)], op)[0]

    def write_many(self, table: str, changes: Sequence[tuple[Any, dict[str, Any] | None]],
                   op: str = "upsert") -> list[int]:
        """Record local changes `(key, values)` to one table, each checked by the law as `write`
        checks one (the first refused raises AuthorityError/SyncError before any is recorded), and
        merged into the table together; their sequence numbers."""
        spec = self.specs.get(table)
        if spec is None:
            raise SyncError(f"Không có bảng {table}", f"no such table: {table}")
        if op not in OPS:
            raise SyncError(f"Thao tác không hợp lệ: {op}", f"unknown operation: {op}")
        opn, cols, role = OPS[op], self._col_index[table], self.authority(self.node_id)
        checked: list[tuple[tuple, dict[int, Any], int]] = []
        for key, values in changes:
            pk = self._key_tuple(spec, key)
            indexed: dict[int, Any] = {}
            for name, value in (values or {}).items():
                if name not in cols:
                    raise SyncError(f"Bảng {table} không có cột {name}", f"table {table} has no column {name}")
                indexed[cols[name]] = int(value) if type(value) is bool else value
            rejection = self.rules.check(role, self.node_id, spec.tid, opn, pk, indexed)
            if rejection is not None:
                cls = AuthorityError if rejection.authority else SyncError
                raise cls(rejection.vi, rejection.en)
            try:
                size = len(msgpack.packb([0, 0, list(pk), indexed], use_bin_type=True)) + CHANGE_HEADER_BYTES
            except (TypeError, ValueError, OverflowError, UnicodeEncodeError) as exc:
                raise SyncError("Giá trị không lưu được", f"value cannot be stored: {exc}") from None
            if size > LOCAL_BATCH_BYTES:
                raise SyncError("Thay đổi quá lớn",
                                f"change too large ({size} bytes, at most {LOCAL_BATCH_BYTES})")
            checked.append((pk, indexed, size))
        seqs: list[int] = []
        origin_raw = _origin_raw(self.node_id)
        with self.batch():
            assert self._pending is not None
            items: list[MergeItem] = []
            for pk, indexed, size in checked:
                if self._pending and self._pending_bytes + size > LOCAL_BATCH_BYTES:
                    self._flush()  # keep every batch within one link message
                hlc = self.hlc.tick(self.clock())
                seqs.append(self._next_seq + len(self._pending))
                items.append((spec.tid, opn, pk, indexed, _clock_bytes(hlc, origin_raw)))
                self._pending.append((hlc, spec.tid, opn, pk, indexed))
                self._pending_bytes += size
                if len(self._pending) >= MAX_BATCH_CHANGES:
                    self._flush()
            self._merge(items)
        return seqs

    def delete(self, table: str, key: Any) -> int:
        """Tombstone a row of a mutable table (HQ only)."""
        return self.write(table, key, None, op="delete")

    def _flush(self) -> None:
        if not self._pending:
            return
        batch = encode_batch(self.key, self._next_seq, self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._log_batches([batch])
        self._next_seq = batch.last_seq + 1

    # ----------------------------------------------------------------- remote batches
    def apply(self, batches: Sequence[SignedBatch]) -> ApplyReport:
        """Merge verified batches from peers; idempotent, order-independent, authority-checked."""
        report = ApplyReport()
        if not batches:
            return report
        with self._tx():
            fresh = self._fresh(batches, report)
            items: list = []
            whole: dict[int, list] = defaultdict(list)  # table id -> runs of whole new rows
            wall = self.clock()
            roles: dict[str, str | None] = {}
            check, run_passes = self.rules.check, self.rules.run_passes
            for b in fresh:
                origin = b.origin
                if origin not in roles:
                    roles[origin] = self.authority(origin)
                role = roles[origin]
                raw = _origin_raw(origin)
                self.hlc.observe(b.max_hlc, wall)
                for run in b.runs:
                    if run_passes(role, origin, run.table_id, run.op, run.key_columns, run.columns):
                        if len(run.columns) == len(self.rules.by_tid[run.table_id].columns):
                            whole[run.table_id].append((run, raw))
                        else:
                            items.extend(_run_items(run, raw))
                        continue
                    for i, (hlc, tid, op, pk, values) in enumerate(run.entries(), run.first_index):
                        rejection = check(role, origin, tid, op, pk, values)
                        if rejection is None:
                            items.append((tid, op, pk, values, _clock_bytes(hlc, raw)))
                        else:
                            report.rejected_changes += 1
                            report.rejections.append((origin, b.first_seq + i, rejection))
                            log.warning("rejected change %s:%d (%s)", origin, b.first_seq + i, rejection.en)
            touched = set()
            for tid, runs in whole.items():
                if self._merger.insert_runs(self.rules.by_tid[tid], runs):
                    touched.add(self.rules.by_tid[tid].name)
                    report.changes_applied += sum(len(r.hlcs) for r, _ in runs)
                else:
                    items.extend(item for r, raw in runs for item in _run_items(r, raw))
            report.tables_touched = self._merge(items, also_touched=touched)
            self._log_batches(fresh)
            report.applied = [(b.origin, b.first_seq, b.last_seq) for b in fresh]
            report.changes_applied += len(items)
            if any(b.origin == self.node_id for b in fresh):
                self._next_seq = max(self._next_seq, self._own_max_seq() + 1)
            self._count("rejected_changes", report.rejected_changes)
            self._count("duplicate_batches", report.duplicate_batches)
            self._count("conflicting_batches", report.conflicting_batches)
        return report

    def _count(self, name: str, n: int = 1) -> None:
        if not n:
            return
        setattr(self.counters, name, getattr(self.counters, name) + n)
        with self._tx():
            self._conn.execute("INSERT INTO local_state (name, value) VALUES (?, ?) ON CONFLICT(name) "
                               "DO UPDATE SET value = value + excluded.value", (name, n))

    def note_forged_batch(self) -> None:
        """Count a batch whose signature failed (the session drops it)."""
        self._count("forged_batches")

    def status(self) -> dict[str, Any]:
        """The "sync" part of `meshmeet status --json`."""
        return {"digest": self.digest(), "origins": self.version_vector(), "pending_chunks": self.pending_chunks(),
                "schema_version": self.version, **self.counters.__dict__}

    def _fresh(self, batches: Sequence[SignedBatch], report: ApplyReport) -> list[SignedBatch]:
        fresh: list[SignedBatch] = []
        taken: dict[str, list[tuple[int, int]]] = defaultdict(list)
        # Held batches of one origin never overlap, so the only one that can overlap [first, last]
        # is the last one starting at or before `last`: one index seek, not a scan of the log.
        q = "SELECT first_seq, last_seq FROM changelog WHERE origin=? AND first_seq<=? ORDER BY first_seq DESC LIMIT 1"
        for b in batches:
            held = self._conn.execute(q, (b.origin, b.last_seq)).fetchone()
            if held is not None and held[1] < b.first_seq:
                held = None
            if held is None:
                held = next(((f, l) for f, l in taken[b.origin] if f <= b.last_seq and l >= b.first_seq), None)
            if held is None:
                fresh.append(b)
                taken[b.origin].append((b.first_seq, b.last_seq))
            elif held == (b.first_seq, b.last_seq):
                report.duplicate_batches += 1
            else:
                report.conflicting_batches += 1
                log.warning("batch %s:%d-%d overlaps one already held; ignored", b.origin, b.first_seq, b.last_seq)
        return fresh

    def _log_batches(self, batches: Iterable[SignedBatch]) -> None:
        rows = [(b.origin, b.first_seq, b.last_seq, b.max_hlc, b.body, b.sig) for b in batches]
        if not rows:
            return
        self._conn.executemany("INSERT INTO changelog (origin, first_seq, last_seq, max_hlc, body, sig) "
                               "VALUES (?,?,?,?,?,?)", rows)
        for origin in {r[0] for r in rows}:
            self._conn.execute(_ADVANCE_VECTOR_SQL, {"origin": origin})

    def _own_max_seq(self) -> int:
        row = self._conn.execute("SELECT max(last_seq) FROM changelog WHERE origin=?", (self.node_id,)).fetchone()
        return row[0] or 0

    def _replay(self) -> None:
        """After a migration: re-merge the whole log (changes for new tables now apply)."""
        with self._tx():
            items = []
            roles: dict[str, str | None] = {}
            for origin, body, sig in self._conn.execute("SELECT origin, body, sig FROM changelog").fetchall():
                b = decode_batch(body, sig, check_signature=False)
                role = roles.setdefault(origin, self.authority(origin))
                raw = _origin_raw(origin)
                for hlc, tid, op, pk, values in b.entries:
                    if self.rules.check(role, origin, tid, op, pk, values) is None:
                        items.append((tid, op, pk, values, _clock_bytes(hlc, raw)))
            self._merge(items)
            self._conn.execute("DELETE FROM local_state WHERE name=?", (REPLAY_FLAG,))

    def _merge(self, items: list[MergeItem], also_touched: AbstractSet[str] = frozenset()) -> set[str]:
        """Merge changes into their tables (merge.py); names of the tables touched, with
        `also_touched` (written by the bulk path). Wanted chunks are rebuilt once if needed."""
        touched = self._merger.merge(items) | also_touched
        if "documents" in touched:
            self._rebuild_wanted()
        return touched
