"""The document-chunk half of the store: content-addressed chunks and what is still wanted.

Chunks are kept by SHA-256 (an identical piece is held once); `wanted_chunks` lists chunks of
live documents not held yet, which is what transfers fetch and what progress counts. A mixin
of `Store` (it uses the store's connection and transactions). This module must never store a
chunk whose bytes do not hash to its name, nor one that no live document wants.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import Any, Callable, Iterable, Iterator, Sequence

from .chunks import chunk_hash, parse_hashes
from .errors import SyncError

SQL_VARS_PER_QUERY = 900


class ChunkStore:
    """Chunk storage on the store's SQLite connection."""

    _conn: sqlite3.Connection
    _tx: Callable[[], AbstractContextManager[None]]
    _count: Callable[..., None]
    get: Callable[..., "dict[str, Any] | None"]

    def store_chunks(self, pieces: Iterable[tuple[bytes, bytes]]) -> None:
        """Keep chunks made here (already hashed by chunks.split)."""
        with self._tx():
            self._conn.executemany("INSERT OR IGNORE INTO chunks (sha256, data) VALUES (?, ?)", pieces)
            self._conn.execute("DELETE FROM wanted_chunks WHERE sha256 IN (SELECT sha256 FROM chunks)")

    def put_chunk(self, sha256: bytes, data: bytes) -> str:
        """Store a received chunk: "stored", "duplicate", "unwanted" or "corrupt" (hash mismatch)."""
        if chunk_hash(data) != sha256:
            self._count("corrupt_chunks")
            return "corrupt"
        with self._tx():
            if self._conn.execute("DELETE FROM wanted_chunks WHERE sha256=?", (sha256,)).rowcount == 0:
                held = self._conn.execute("SELECT 1 FROM chunks WHERE sha256=?", (sha256,)).fetchone()
                return "duplicate" if held else "unwanted"
            self._conn.execute("INSERT OR IGNORE INTO chunks (sha256, data) VALUES (?, ?)", (sha256, data))
        return "stored"

    def get_chunk(self, sha256: bytes) -> bytes | None:
        row = self._conn.execute("SELECT data FROM chunks WHERE sha256=?", (sha256,)).fetchone()
        return None if row is None else row[0]

    def has_chunks(self, hashes: Sequence[bytes]) -> set[bytes]:
        held: set[bytes] = set()
        for start in range(0, len(hashes), SQL_VARS_PER_QUERY):
            part = list(hashes[start:start + SQL_VARS_PER_QUERY])
            held.update(r[0] for r in self._conn.execute(
                f"SELECT sha256 FROM chunks WHERE sha256 IN ({','.join('?' * len(part))})", part))
        return held

    def wanted_chunks(self, limit: int) -> list[bytes]:
        """Chunks of live documents not held yet."""
        return [r[0] for r in self._conn.execute("SELECT sha256 FROM wanted_chunks ORDER BY rowid LIMIT ?", (limit,))]

    def chunks_since(self, rowid: int, limit: int) -> list[tuple[int, bytes]]:
        """(rowid, sha256) of chunks stored after `rowid`, oldest first (announcements, sync/swarm.py)."""
        return self._conn.execute("SELECT rowid, sha256 FROM chunks WHERE rowid > ? ORDER BY rowid LIMIT ?",
                                  (rowid, limit)).fetchall()

    def newest_chunks(self, limit: int) -> tuple[int, list[bytes]]:
        """(highest chunk rowid, the `limit` newest chunks' names, newest first)."""
        rows = self._conn.execute("SELECT rowid, sha256 FROM chunks ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
        return (rows[0][0] if rows else 0), [r[1] for r in rows]

    def is_wanted(self, sha256: bytes) -> bool:
        return self._conn.execute("SELECT 1 FROM wanted_chunks WHERE sha256=?", (sha256,)).fetchone() is not None

    def pending_chunks(self) -> int:
        return self._conn.execute("SELECT count(*) FROM wanted_chunks").fetchone()[0]

    def document_progress(self, doc_id: str) -> tuple[int, int]:
        """(chunks held, chunks in total) for a document."""
        doc = self.get("documents", doc_id)
        if doc is None:
            raise SyncError(f"Không có tài liệu {doc_id}", f"no such document: {doc_id}")
        hashes = parse_hashes(doc["chunks"])
        held = self.has_chunks(list(set(hashes)))
        return sum(1 for h in hashes if h in held), len(hashes)

    def read_document(self, doc_id: str) -> Iterator[bytes]:
        """The document's bytes, chunk by chunk; SyncError if a chunk is still missing."""
        doc = self.get("documents", doc_id)
        if doc is None:
            raise SyncError(f"Không có tài liệu {doc_id}", f"no such document: {doc_id}")
        for h in parse_hashes(doc["chunks"]):
            data = self.get_chunk(h)
            if data is None:
                raise SyncError("Tài liệu chưa tải xong", f"document {doc_id} is not complete yet")
            yield data

    def _rebuild_wanted(self) -> None:
        self._conn.execute("DELETE FROM wanted_chunks")
        for (blob,) in self._conn.execute("SELECT chunks FROM documents WHERE coalesce(_del, 0) = 0").fetchall():
            self._conn.executemany(
                "INSERT OR IGNORE INTO wanted_chunks (sha256) SELECT ? WHERE NOT EXISTS "
                "(SELECT 1 FROM chunks WHERE sha256 = ?)", [(h, h) for h in parse_hashes(blob)])

