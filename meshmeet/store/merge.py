"""How changes become rows: merging replicated changes into the store's SQLite tables.

`Store` hands a `Merger` changes that have already passed the authority check, as merge items
(table id, op, key, {column index: value}, clock), and the merger folds them into the rows by
the rules in docs/state.md: last-writer-wins per column by clock (a tombstone has its own
clock), add-only rows keep their earliest change, and runs of whole new rows go in by a bulk
fast path. It also owns how clocks are stored (see "clocks as stored" below). This module must
never check authority, never begin, commit or roll back a transaction (it writes inside the
store's), and never touch the change log or the version vector.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from itertools import chain, repeat
from typing import Any, Iterable, Sequence

import msgpack

from .batch import OP_DELETE, Run
from .rules_port import ChangeRules
from .schema import LWW, TableSpec

# One change to merge: (table id, op, key tuple, {column index: value}, clock), the clock as
# bytes that compare in clock order (see "clocks as stored" below).
MergeItem = tuple[int, int, tuple, dict, bytes]

SQL_VARS_PER_QUERY = 900  # bound parameters per SELECT, under SQLite's old default limit of 999
_NO_CLOCK = b""
_TOMB = -1  # key of the tombstone's clock in an LWW row's clock map


def _fold_lww(st: list, op: int, values: dict, ck: bytes, ncols: int) -> None:
    """Merge one change into [values, clocks, deleted]: per column, the greater clock wins."""
    clk = st[1]
    if type(clk) is bytes:  # a uniform clock: expand before columns diverge
        clk = st[1] = dict.fromkeys(range(ncols), clk)
    if op == OP_DELETE:
        if ck > clk.get(_TOMB, _NO_CLOCK):
            clk[_TOMB] = ck
            st[2] = 1
        return
    vals = st[0]
    for idx, value in values.items():
        if ck > clk.get(idx, _NO_CLOCK):
            vals[idx] = value
            clk[idx] = ck


class Merger:
    """Writes merge items into the tables of one SQLite connection (the store's)."""

    def __init__(self, conn: sqlite3.Connection, rules: ChangeRules, *, int_clocks: bool) -> None:
        """`int_clocks`: schema v4 or later, where a uniform clock is stored as (HLC, origin number)."""
        self._conn = conn
        self._rules = rules
        self._int_clocks = int_clocks
        self._clk_cols = ("_clk", "_org") if int_clocks else ("_clk",)
        self._insert_sqls: dict[tuple, str] = {}
        self.load_origins()

    # ----------------------------------------------------------------- merge
    def merge(self, items: list[MergeItem]) -> set[str]:
        """Fold changes into their tables; returns the names of the tables touched."""
        by_tid: dict[int, list] = defaultdict(list)
        for item in items:
            by_tid[item[0]].append(item)
        touched = set()
        for tid, group in by_tid.items():
            spec = self._rules.by_tid[tid]
            touched.add(spec.name)
            if spec.kind == LWW:
                self._merge_lww(spec, group)
            else:
                self._merge_addonly(spec, group)
        return touched

    def _existing(self, spec: TableSpec, keys: list[tuple], extra: str) -> dict[tuple, list]:
        cols = ", ".join(f'"{c}"' for c in (*spec.pk, *(c.name for c in spec.columns)))
        npk = len(spec.pk)
        found: dict[tuple, list] = {}
        step = max(1, SQL_VARS_PER_QUERY // npk)
        for start in range(0, len(keys), step):
            part = keys[start:start + step]
            if npk == 1:
                where = f'"{spec.pk[0]}" IN ({",".join("?" * len(part))})'
                params: list = [k[0] for k in part]
            else:
                tup = "(" + ",".join("?" * npk) + ")"
                where = f'({",".join(spec.pk)}) IN (VALUES {",".join([tup] * len(part))})'
                params = [v for k in part for v in k]
            for row in self._conn.execute(f'SELECT {cols}, {extra} FROM "{spec.name}" WHERE {where}', params):
                found[tuple(row[:npk])] = list(row[npk:])
        return found

    def _merge_lww(self, spec: TableSpec, group: list) -> None:
        ncols = len(spec.columns)
        full = range(ncols)
        state: dict[tuple, list] = {}
        for _tid, op, pk, values, ck in group:  # first fold this group on its own
            st = state.get(pk)
            if st is None:
                if op != OP_DELETE and len(values) == ncols:
                    state[pk] = [[values[i] for i in full], ck, 0]  # one clock for every column
                    continue
                st = state[pk] = [[None] * ncols, {}, 0]
            _fold_lww(st, op, values, ck, ncols)
        meta = (*self._clk_cols, "_del")
        nclk = len(self._clk_cols)
        rows = [(*pk, *st[0], *self._stored_clock(st[1]), st[2]) for pk, st in state.items()]
        if self._insert_new(spec, rows, meta):
            return
        # Some keys were already held: merge with the stored rows. Folding a change into a row
        # that already has it changes nothing, so the rows just inserted above are harmless.
        old = self._existing(spec, list(state), ", ".join(meta))
        state = {pk: [row[:ncols], self._column_clocks(row[ncols:ncols + nclk], ncols), row[ncols + nclk] or 0]
                 for pk, row in old.items()}
        for _tid, op, pk, values, ck in group:
            _fold_lww(state[pk], op, values, ck, ncols)
        self._upsert(spec, [(*pk, *st[0], *self._stored_clock(st[1]), st[2]) for pk, st in state.items()], meta)

    def _merge_addonly(self, spec: TableSpec, group: list) -> None:
        ncols = len(spec.columns)
        best: dict[tuple, tuple[bytes, dict]] = {}
        for _tid, _op, pk, values, ck in group:
            cur = best.get(pk)
            if cur is None or ck < cur[0]:
                best[pk] = (ck, values)
        rows = [(*pk, *(values.get(i) for i in range(ncols)), *self._stored_clock(ck)) for pk, (ck, values) in best.items()]
        if self._insert_new(spec, rows, self._clk_cols):
            return
        old = self._existing(spec, list(best), ", ".join(self._clk_cols))
        rows = [(*pk, *(values.get(i) for i in range(ncols)), *self._stored_clock(ck)) for pk, (ck, values) in best.items()
                if ck < self._uniform_clock(old[pk][ncols:])]
        self._upsert(spec, rows, self._clk_cols)

    def insert_runs(self, spec: TableSpec, runs: list[tuple[Run, bytes]]) -> bool:
        """Fast path for bulk transfers: runs of whole rows whose keys are all new here.

        Such a row is exactly its change, with one clock for all columns. True when every row
        went in this way; False (and nothing written) when the general merge is needed.
        """
        ncols = len(spec.columns)
        parts: list = []  # per run, an iterator of its rows: built one at a time while SQLite inserts
        count = 0
        for run, raw in runs:
            if self._int_clocks:  # the clocks straight from the batch: no per-row work in Python
                clocks: tuple = (run.hlcs, repeat(self._origin_num(raw)))
            else:
                clocks = ([h.to_bytes(8, "big") + raw for h in run.hlcs],)
            parts.append(zip(*run.key_columns, *(run.columns[i] for i in range(ncols)), *clocks))
            count += len(run.hlcs)
        # A key held already, or written twice in these runs, makes INSERT OR IGNORE skip a row;
        # the count of rows inserted then falls short and the general merge decides instead.
        self._conn.execute("SAVEPOINT fast")
        # Streaming the rows (not a list of them) matters: each row tuple is freed as soon as it is
        # bound, so a bulk transfer does not keep triggering the cyclic GC (~12 % of apply time).
        if self._insert_new(spec, chain.from_iterable(parts), self._clk_cols, count):
            self._conn.execute("RELEASE fast")
            return True
        self._conn.execute("ROLLBACK TO fast")
        self._conn.execute("RELEASE fast")
        return False

    def _insert_sql(self, spec: TableSpec, meta: tuple[str, ...], conflict: str) -> str:
        """INSERT OR `conflict` of a whole row: key, value columns, then the `meta` columns."""
        sql = self._insert_sqls.get((spec.name, meta, conflict))
        if sql is None:
            names = (*spec.pk, *(c.name for c in spec.columns), *meta)
            sql = (f'INSERT OR {conflict} INTO "{spec.name}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
                   f'VALUES ({",".join("?" * len(names))})')
            self._insert_sqls[(spec.name, meta, conflict)] = sql
        return sql

    def _insert_new(self, spec: TableSpec, rows: Iterable[tuple], meta: tuple[str, ...],
                    count: int | None = None) -> bool:
        """Insert rows whose keys are new; True when every key was new (the common case).
        `count`: how many rows an iterator gives (a list's own length otherwise)."""
        if count is None:
            count = len(rows)  # type: ignore[arg-type]
        before = self._conn.total_changes
        self._conn.executemany(self._insert_sql(spec, meta, "IGNORE"), rows)
        return self._conn.total_changes - before == count

    def _upsert(self, spec: TableSpec, rows: list[tuple], meta: tuple[str, ...]) -> None:
        if rows:
            self._conn.executemany(self._insert_sql(spec, meta, "REPLACE"), rows)

    # ----------------------------------------------------------------- clocks as stored
    # In memory a clock is 16 bytes (8-byte big-endian HLC, then the origin's 8 bytes), so that
    # clocks compare as bytes. From schema v4 a row whose columns share one clock stores it as
    # `_clk` = the HLC (INTEGER) and `_org` = a number for the origin from the local `origins`
    # table; per-column clocks stay a msgpack map {column: clock}. Rows from before v4 keep a
    # 16-byte `_clk` blob, read as is.
    def load_origins(self) -> None:
        """(Re)read the origin numbers from the `origins` table, e.g. after a rollback."""
        self._origin_by_num: dict[int, bytes] = {}
        if self._int_clocks:
            self._origin_by_num = dict(self._conn.execute("SELECT num, raw FROM origins"))
        self._num_by_origin = {raw: num for num, raw in self._origin_by_num.items()}

    def _origin_num(self, raw: bytes) -> int:
        """The local number of an origin, taken (inside the caller's transaction) when new."""
        num = self._num_by_origin.get(raw)
        if num is None:
            num = self._conn.execute("INSERT INTO origins (raw) VALUES (?)", (raw,)).lastrowid
            self._num_by_origin[raw] = num
            self._origin_by_num[num] = raw
        return num

    def _stored_clock(self, clk: bytes | dict) -> tuple:
        """A row's clock (uniform bytes, or a map per column) as the values of `_clk_cols`."""
        if type(clk) is not bytes:
            return (msgpack.packb(clk), None) if self._int_clocks else (msgpack.packb(clk),)
        if self._int_clocks:
            return int.from_bytes(clk[:8], "big"), self._origin_num(clk[8:])
        return (clk,)

    def _uniform_clock(self, stored: Sequence[Any]) -> bytes:
        clk = stored[0]
        if type(clk) is int:
            return clk.to_bytes(8, "big") + self._origin_by_num[stored[1]]
        return clk

    def _column_clocks(self, stored: Sequence[Any], ncols: int) -> dict:
        """A stored LWW clock as {column index (or _TOMB): clock}."""
        clk = stored[0]
        if clk is None:
            return {}
        if type(clk) is int or len(clk) == 16:
            return dict.fromkeys(range(ncols), self._uniform_clock(stored))
        return msgpack.unpackb(clk, strict_map_key=False)
