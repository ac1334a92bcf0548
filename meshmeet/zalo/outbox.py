"""The bridge's durable outbox and inbox: DIR/zalo.sqlite (0600, never replicated).

Outbox: one row per message to send, keyed by an idempotency key ("ann:<announcement id>" for a
broadcast, "ann:<announcement id>:<user>" for its copy to one follower, "reply:<reply id>" for a
chair's reply). States: queued -> sending -> sent (the OA's message id recorded) | failed (the OA's
error), with retry (queued again, `next_at`) and `unsure` (the request may have reached the OA
and no answer came: before sending again the driver looks for the message in the user's
conversation, so it is sent exactly once). A row left `sending` by a crash is `unsure` at the
next start. Inbox: one row per OA message id taken in (`stored` once it is feedback). Tokens:
the current access and refresh tokens (a refresh token is single use). Every change commits
before the network is touched. This module must never do network I/O.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

FILE = "zalo.sqlite"
STATES = ("queued", "sending", "unsure", "sent", "failed")
RETRY_FIRST_S = 2.0


@dataclass(frozen=True)
class Item:
    key: str
    kind: str      # "broadcast" | "promotion" | "cs"
    user_id: str | None
    title: str
    text: str
    state: str
    attempts: int
    next_at: float
    oa_message_id: str | None
    error: str | None


class Outbox:
    def __init__(self, data_dir: Path) -> None:
        path = Path(data_dir) / FILE
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")  # a sent mark must survive a power cut
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS outbox (key TEXT PRIMARY KEY, kind TEXT NOT NULL, user_id TEXT, title TEXT NOT NULL,
                text TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
                oa_message_id TEXT, error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
            CREATE TABLE IF NOT EXISTS inbox (message_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, text TEXT NOT NULL,
                time_ms INTEGER NOT NULL, feedback_id TEXT, state TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS tokens (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)
        # A crash between "sending" and its outcome: the OA may have the message.
        self.db.execute("UPDATE outbox SET state = 'unsure' WHERE state = 'sending'")

    # ----- outbox --------------------------------------------------------------------------
    def enqueue(self, key: str, kind: str, user_id: str | None, title: str, text: str, now: float) -> bool:
        """Add once per key (True when new); a key seen before is left as it is."""
        cur = self.db.execute("INSERT OR IGNORE INTO outbox (key, kind, user_id, title, text, state, next_at, created_at, "
                              "updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                              (key, kind, user_id, title, text, now, now, now))
        return cur.rowcount == 1

    def has(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone() is not None

    def due(self, now: float, limit: int = 50) -> list[Item]:
        rows = self.db.execute("SELECT key, kind, user_id, title, text, state, attempts, next_at, oa_message_id, error "
                               "FROM outbox WHERE state IN ('queued', 'unsure') AND next_at <= ? "
                               "ORDER BY kind = 'broadcast' DESC, created_at, key LIMIT ?", (now, limit)).fetchall()
        return [Item(*r) for r in rows]

    def next_due_at(self) -> float | None:
        row = self.db.execute("SELECT min(next_at) FROM outbox WHERE state IN ('queued', 'unsure')").fetchone()
        return row[0]

    def _set(self, key: str, now: float, **cols: object) -> None:
        names = ", ".join(f"{k} = ?" for k in cols)
        self.db.execute(f"UPDATE outbox SET {names}, updated_at = ? WHERE key = ?", (*cols.values(), now, key))

    def sending(self, key: str, now: float) -> None:
        self.db.execute("UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ? WHERE key = ?",
                        (now, key))

    def sent(self, key: str, oa_message_id: str | None, now: float) -> None:
        self._set(key, now, state="sent", oa_message_id=oa_message_id, error=None)

    def retry(self, key: str, error: str, after_s: float, now: float, *, unsure: bool, retry_max_s: float) -> None:
        attempts = self.db.execute("SELECT attempts FROM outbox WHERE key = ?", (key,)).fetchone()[0]
        wait = min(retry_max_s, max(after_s, RETRY_FIRST_S * 2 ** min(20, max(0, attempts - 1))))
        self._set(key, now, state="unsure" if unsure else "queued", error=error, next_at=now + wait)

    def failed(self, key: str, error: str, now: float) -> None:
        self._set(key, now, state="failed", error=error)

    def requeue(self, key: str, now: float) -> bool:
        """A failed item back in the queue (the chair's "send again")."""
        cur = self.db.execute("UPDATE outbox SET state = 'queued', next_at = ?, updated_at = ? WHERE key = ? "
                              "AND state = 'failed'", (now, now, key))
        return cur.rowcount == 1

    def items(self, limit: int = 100) -> list[Item]:
        rows = self.db.execute("SELECT key, kind, user_id, title, text, state, attempts, next_at, oa_message_id, error "
                               "FROM outbox ORDER BY updated_at DESC, key LIMIT ?", (limit,)).fetchall()
        return [Item(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        got = dict(self.db.execute("SELECT state, count(*) FROM outbox WHERE kind != 'broadcast' GROUP BY state"))
        return {s: got.get(s, 0) for s in STATES}

    # ----- inbox ---------------------------------------------------------------------------
    def take_in(self, message_id: str, user_id: str, text: str, time_ms: int) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO inbox VALUES (?, ?, ?, ?, NULL, 'new')",
                              (message_id, user_id, text, time_ms))
        return cur.rowcount == 1

    def unstored(self) -> list[tuple[str, str, str, int]]:
        return self.db.execute("SELECT message_id, user_id, text, time_ms FROM inbox WHERE state = 'new' "
                               "ORDER BY time_ms, message_id").fetchall()

    def stored(self, message_id: str, feedback_id: str) -> None:
        self.db.execute("UPDATE inbox SET state = 'stored', feedback_id = ? WHERE message_id = ?",
                        (feedback_id, message_id))

    def forget_users_before(self, time_ms: int) -> int:
        """Retention: inbox rows (they hold Zalo user ids) and sent/failed items older than this."""
        n = self.db.execute("DELETE FROM inbox WHERE time_ms < ? AND state = 'stored'", (time_ms,)).rowcount
        n += self.db.execute("UPDATE outbox SET user_id = NULL WHERE user_id IS NOT NULL AND state IN ('sent', 'failed') "
                             "AND updated_at < ?", (time_ms / 1000.0,)).rowcount
        return n

    # ----- tokens --------------------------------------------------------------------------
    def token(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM tokens WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_tokens(self, values: dict[str, str]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT OR REPLACE INTO tokens VALUES (?, ?)", list(values.items()))
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
