"""The shape of the replicated store: table specs, schema versions and migrations.

Each replicated table has a small wire id, a kind ("lww": last-writer-wins per column, or
"addonly": the earliest add of a key wins and rows are never removed), its primary key,
its value columns in a fixed order (the wire names a column by its index, so columns are
only ever appended), who may write it and which column names the writing node. Local
tables (changelog, version vector, chunks) live here too. This module must never hold a
connection or migrate a database past the version it is asked for.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Callable

import sqlite_utils

LATEST_VERSION = 6
REPLAY_FLAG = "replay_log"  # local_state row: merge the whole change log again (set by migrations)
LWW = "lww"
ADDONLY = "addonly"
TEXT, INTEGER, REAL, BLOB = str, int, float, bytes


@dataclass(frozen=True)
class Column:
    name: str
    type: type
    since: int = 1


@dataclass(frozen=True)
class TableSpec:
    """One replicated table."""

    name: str
    tid: int
    kind: str
    pk: tuple[str, ...]
    columns: tuple[Column, ...]
    writers: frozenset[str]
    owner: str | None = None  # column (in pk or values) that must equal the writing node id
    hq_may_write_for_others: bool = False
    since: int = 1

    def at(self, version: int) -> "TableSpec":
        cols = tuple(c for c in self.columns if c.since <= version)
        return TableSpec(self.name, self.tid, self.kind, self.pk, cols, self.writers, self.owner,
                         self.hq_may_write_for_others, self.since)


def _cols(*items: tuple) -> tuple[Column, ...]:
    return tuple(Column(*item) for item in items)


ALL = frozenset({"hq", "hall", "relay"})
HQ = frozenset({"hq"})
HQ_HALL = frozenset({"hq", "hall"})

TABLES: tuple[TableSpec, ...] = (
    TableSpec("roster_entries", 1, ADDONLY, ("hash",), _cols(("blob", BLOB)), ALL),
    TableSpec("meetings", 2, LWW, ("id",),
              _cols(("title", TEXT), ("starts", TEXT), ("status", TEXT), ("created_by", TEXT),
                    ("location", TEXT, 2)), HQ_HALL),
    TableSpec("agenda_items", 3, LWW, ("id",),
              _cols(("meeting_id", TEXT), ("position", INTEGER), ("title", TEXT), ("status", TEXT)), HQ),
    TableSpec("documents", 4, LWW, ("id",),
              _cols(("meeting_id", TEXT), ("name", TEXT), ("size", INTEGER), ("sha256", TEXT),
                    ("chunk_bytes", INTEGER), ("chunks", BLOB)), HQ),
    TableSpec("attendance", 5, ADDONLY, ("id",),
              _cols(("meeting_id", TEXT), ("node", TEXT), ("present", INTEGER), ("at", REAL)),
              HQ_HALL, owner="node"),
    TableSpec("motions", 6, LWW, ("id",),
              _cols(("meeting_id", TEXT), ("title", TEXT), ("rule", TEXT), ("status", TEXT),
                    ("result", TEXT)), HQ),
    TableSpec("ballots", 7, ADDONLY, ("motion_id", "node", "voter"),
              _cols(("choice", TEXT), ("count", INTEGER), ("at", REAL)), HQ_HALL, owner="node"),
    TableSpec("announcements", 8, LWW, ("id",),
              _cols(("text", TEXT), ("urgent", INTEGER), ("at", REAL), ("zalo", INTEGER, 6)), HQ),
    # v6 (issue 17): where a feedback came from, the resident's short code, and the contact sealed
    # to HQ (meshmeet/citizens/sealed.py): readable at HQ only; the receiving node keeps it locally.
    TableSpec("feedback", 9, ADDONLY, ("id",),
              _cols(("node", TEXT), ("meeting_id", TEXT), ("text", TEXT), ("at", REAL),
                    ("source", TEXT, 6), ("code", TEXT, 6), ("contact", BLOB, 6)),
              HQ_HALL, owner="node"),
    TableSpec("replies", 10, ADDONLY, ("id",),
              _cols(("feedback_id", TEXT), ("node", TEXT), ("text", TEXT), ("at", REAL)), HQ, owner="node"),
    TableSpec("chat", 11, ADDONLY, ("id",),
              _cols(("meeting_id", TEXT), ("node", TEXT), ("text", TEXT), ("at", REAL)), HQ_HALL, owner="node"),
    TableSpec("speaking_queue", 12, LWW, ("meeting_id", "node"),
              _cols(("state", TEXT), ("requested_at", REAL)), HQ_HALL, owner="node",
              hq_may_write_for_others=True, since=2),
    # One row per (document, node) once that node holds the document whole; only the node itself
    # writes its rows (relays too: they hold documents for the halls behind them).
    TableSpec("doc_holdings", 13, ADDONLY, ("doc_id", "node"), _cols(("sha256", TEXT), ("at", REAL)),
              ALL, owner="node", since=3),
    # The page on every hall's TV (meshmeet/slides/): one row per page turn by HQ, the newest row of
    # a meeting's documents is what is shown; the rows are also the show's history.
    TableSpec("slides", 14, ADDONLY, ("id",), _cols(("doc_id", TEXT), ("page", INTEGER), ("at", REAL)),
              HQ, since=6),
    # A hall's secretary (or HQ) hides a resident's feedback from the TVs: a hall only feedback
    # it received itself (namespaced ids, authority.NAMESPACED).
    TableSpec("feedback_moderation", 15, LWW, ("feedback_id",), _cols(("hidden", INTEGER),), HQ_HALL, since=6),
    # One row per node: the meshmeet version it runs and where its update stands (release_service.py),
    # so HQ's status and the chair's network map show every node's version (docs/release.md).
    TableSpec("node_versions", 16, LWW, ("node",),
              _cols(("version", TEXT), ("state", TEXT), ("detail", TEXT), ("at", REAL)),
              ALL, owner="node", since=6),
)


def specs_for(version: int) -> dict[str, TableSpec]:
    """The replicated tables, and their columns, as they are at schema `version`."""
    return {t.name: t.at(version) for t in TABLES if t.since <= version}


_SQL_TYPE = {str: "TEXT", int: "INTEGER", float: "REAL", bytes: "BLOB"}


def _create_table(db: sqlite_utils.Database, spec: TableSpec, version: int) -> None:
    """A replicated table with its merge metadata: `_clk` (the clock), from v4 `_org` (the
    clock's origin as a number from `origins`) and, for LWW tables, `_del` (the tombstone)."""
    columns: dict[str, type] = {p: str for p in spec.pk}
    columns.update({c.name: c.type for c in spec.columns})
    columns["_clk"] = bytes
    if version >= 4:
        columns["_org"] = int
    if spec.kind == LWW:
        columns["_del"] = int
    db[spec.name].create(columns, pk=spec.pk if len(spec.pk) > 1 else spec.pk[0],
                         not_null=set(spec.pk))


def _v1(db: sqlite_utils.Database) -> None:
    for spec in specs_for(1).values():
        _create_table(db, spec, 1)
    db["changelog"].create({"origin": str, "first_seq": int, "last_seq": int, "max_hlc": int,
                            "body": bytes, "sig": bytes}, pk=("origin", "first_seq"))
    db["version_vector"].create({"origin": str, "seq": int}, pk="origin")
    db["chunks"].create({"sha256": bytes, "data": bytes}, pk="sha256")
    db["wanted_chunks"].create({"sha256": bytes}, pk="sha256")
    db["local_state"].create({"name": str, "value": int}, pk="name")


def _v2(db: sqlite_utils.Database) -> None:
    v2 = specs_for(2)
    _create_table(db, v2["speaking_queue"], 2)
    db["meetings"].add_column("location", str)


def _v3(db: sqlite_utils.Database) -> None:
    _create_table(db, specs_for(3)["doc_holdings"], 3)


def _v4(db: sqlite_utils.Database) -> None:
    """A row's uniform clock as an INTEGER HLC plus an origin number (was a 16-byte blob):
    cheaper to store and to build when bulk transfers insert whole rows. Rows written before
    keep their blobs, which stay readable (docs/state.md, "Clocks as stored")."""
    db["origins"].create({"num": int, "raw": bytes}, pk="num", not_null={"raw"})
    db["origins"].create_index(["raw"], unique=True)
    for name in specs_for(3):
        db[name].add_column("_org", int)


def _v5(db: sqlite_utils.Database) -> None:
    """Authority at merge for every column (authority.py) refuses changes that v4 applied (a hall
    renaming HQ's meeting, a ballot count of a million...). The rows are emptied here and the
    store merges its whole change log again under the new rules (Store._replay), so an upgraded
    node holds exactly what a new one does; the log itself, and so every batch, is kept."""
    for name in specs_for(4):
        db.execute(f'DELETE FROM "{name}"')
    # Committed with the emptied rows: the store replays the log while this flag is set, so a
    # crash between this step and the replay cannot leave the tables empty.
    db.execute("INSERT OR REPLACE INTO local_state (name, value) VALUES (?, 1)", (REPLAY_FLAG,))


def _v6(db: sqlite_utils.Database) -> None:
    """Slides (issue 15), residents' feedback (issue 17: feedback.source/code/contact,
    announcements.zalo, feedback_moderation) and node_versions (issue 16). New columns and tables
    only: nothing already held changes meaning. Rows that arrived while this node ran an older
    release were refused as an unknown table but their batches kept: the log is merged again so
    they apply now."""
    _create_table(db, specs_for(6)["slides"], 6)
    for column, kind in (("source", str), ("code", str), ("contact", bytes)):
        db["feedback"].add_column(column, kind)
    db["announcements"].add_column("zalo", int)
    _create_table(db, specs_for(6)["feedback_moderation"], 6)
    # A local index (not replicated, not in the digest): the page finds a reply by its code.
    db["feedback"].create_index(["code"], index_name="feedback_code")
    _create_table(db, specs_for(6)["node_versions"], 6)
    db.execute("INSERT OR REPLACE INTO local_state (name, value) VALUES (?, 1)", (REPLAY_FLAG,))


MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6}


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
    if row is None:
        return 0
    got = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if got is None else int(got[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> tuple[int, int]:
    """Bring the database up to `target`, one version per transaction; (from, to)."""
    start = current_version(conn)
    db = sqlite_utils.Database(conn)
    for version in range(start + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](db)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return start, max(start, target)
