"""The read half of the store: live rows, the canonical dump and digest, the version vector and log.

A mixin of `Store` (db.py), as chunkstore.py is: it uses the store's connection and table specs.
Filtered reads for the API and the services are named in meshmeet/meeting/queries.py, built on
`rows`. This module must never write: no INSERT, UPDATE or DELETE, and no transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import SyncError
from .schema import LWW, TableSpec


@dataclass(frozen=True)
class LoggedBatch:
    """A batch as held in the change log, ready to send unchanged."""

    origin: str
    first_seq: int
    last_seq: int
    body: bytes
    sig: bytes


class StoreReads:
    """Reads on the store's SQLite connection."""

    _conn: sqlite3.Connection
    specs: dict[str, TableSpec]

    # ----------------------------------------------------------------- version vector and log
    def version_vector(self) -> dict[str, int]:
        """Highest sequence held without gaps, per origin."""
        return dict(self._conn.execute("SELECT origin, seq FROM version_vector WHERE seq > 0"))

    def batches_after(self, vector: dict[str, int], limit: int | None = None) -> list[LoggedBatch]:
        """Held batches with changes beyond `vector`, oldest first per origin."""
        out: list[LoggedBatch] = []
        origins = [r[0] for r in self._conn.execute("SELECT DISTINCT origin FROM changelog")]
        for origin in sorted(origins):
            for row in self._conn.execute(
                    "SELECT first_seq, last_seq, body, sig FROM changelog WHERE origin=? AND last_seq>? "
                    "ORDER BY first_seq", (origin, vector.get(origin, 0))):
                out.append(LoggedBatch(origin, row[0], row[1], row[2], row[3]))
                if limit is not None and len(out) >= limit:
                    return out
        return out

    def change_count(self) -> int:
        return self._conn.execute("SELECT coalesce(sum(last_seq - first_seq + 1), 0) FROM changelog").fetchone()[0]

    # ----------------------------------------------------------------- reads
    def _key_tuple(self, spec: TableSpec, key: Any) -> tuple:
        if isinstance(key, dict):
            try:
                return tuple(key[p] for p in spec.pk)
            except KeyError as missing:
                raise SyncError(f"Thiếu khóa {missing}", f"missing key column {missing}") from None
        if isinstance(key, (tuple, list)):
            return tuple(key)
        return (key,)

    def get(self, table: str, key: Any) -> dict[str, Any] | None:
        """A live row as {column: value}, or None when absent or deleted."""
        spec = self._spec(table)
        pk = self._key_tuple(spec, key)
        where = " AND ".join(f'"{p}"=?' for p in spec.pk)
        rows = self._select(spec, where, pk)
        return rows[0] if rows else None

    def rows(self, table: str, where: str | None = None, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Live rows of a table (optionally filtered by an SQL condition), in key order."""
        return self._select(self._spec(table), where, params)

    def _spec(self, table: str) -> TableSpec:
        spec = self.specs.get(table)
        if spec is None:
            raise SyncError(f"Không có bảng {table}", f"no such table: {table}")
        return spec

    def _select(self, spec: TableSpec, where: str | None, params: Sequence[Any]) -> list[dict[str, Any]]:
        names = [*spec.pk, *(c.name for c in spec.columns)]
        conds = [where] if where else []
        if spec.kind == LWW:
            conds.append("coalesce(_del, 0) = 0")
        sql = f'SELECT {", ".join(chr(34) + n + chr(34) for n in names)} FROM "{spec.name}"'
        if conds:
            sql += " WHERE " + " AND ".join(f"({c})" for c in conds)
        sql += " ORDER BY " + ", ".join(f'"{p}"' for p in spec.pk)
        return [dict(zip(names, row)) for row in self._conn.execute(sql, tuple(params))]

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """The replicated state, canonical: every table, rows in key order, tombstones marked."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name in sorted(self.specs):
            spec = self.specs[name]
            names = [*spec.pk, *(c.name for c in spec.columns)]
            deleted = "_del" if spec.kind == LWW else "0"
            sql = (f'SELECT {", ".join(chr(34) + n + chr(34) for n in names)}, coalesce({deleted}, 0) '
                   f'FROM "{name}" ORDER BY ' + ", ".join(f'"{p}"' for p in spec.pk))
            rows = []
            for row in self._conn.execute(sql):
                if row[-1]:
                    rows.append({**dict(zip(spec.pk, row)), "_deleted": True})
                else:
                    rows.append({n: (v.hex() if isinstance(v, bytes) else v) for n, v in zip(names, row)})
            out[name] = rows
        return out

    def dump_json(self) -> str:
        return json.dumps(self.dump(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical dump: equal exactly when the replicated state is."""
        return hashlib.sha256(self.dump_json().encode()).hexdigest()

    def integrity_ok(self) -> bool:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
