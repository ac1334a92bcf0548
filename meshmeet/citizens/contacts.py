"""The node's contact book: residents' personal data, kept only here (never replicated).

One SQLite file, DIR/contacts.sqlite (0600, `secure_delete` on so deleted rows are overwritten;
WAL, truncated after every purge so no old page of a deleted row stays in it), one row per
feedback that came with a contact: at the hall that received it, and at HQ once HQ has opened the
sealed copy. `purge(before)` deletes every row received before the retention limit; the node's
driver calls it hourly. Blocking sqlite3 calls, quick; this module must never send a row
anywhere, and never be opened by a page that a TV shows.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .sealed import Contact

FILE = "contacts.sqlite"
DEFAULT_RETENTION_DAYS = 90


class ContactBook:
    def __init__(self, data_dir: Path) -> None:
        path = Path(data_dir) / FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA secure_delete = ON")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS contacts (feedback_id TEXT PRIMARY KEY, name TEXT, phone TEXT, "
                        "zalo_user_id TEXT, received_at REAL NOT NULL)")

    def put(self, feedback_id: str, contact: Contact, received_at: float) -> None:
        self.put_many([(feedback_id, contact, received_at)])

    def put_many(self, rows: list[tuple[str, Contact, float]]) -> None:
        """Several contacts in one transaction (one commit)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO contacts VALUES (?, ?, ?, ?, ?)",
                                [(f, c.name, c.phone, c.zalo_user_id, at) for f, c, at in rows])

    def get(self, feedback_id: str) -> Contact | None:
        row = self.db.execute("SELECT name, phone, zalo_user_id FROM contacts WHERE feedback_id = ?",
                              (feedback_id,)).fetchone()
        return None if row is None else Contact(*row)

    def known(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT feedback_id FROM contacts")}

    def purge(self, before: float) -> int:
        """Delete every contact received before `before` (Unix seconds); how many."""
        cur = self.db.execute("DELETE FROM contacts WHERE received_at < ?", (before,))
        if cur.rowcount:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount

    def close(self) -> None:
        self.db.close()
