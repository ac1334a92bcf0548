"""Named reads of the meeting state: every filtered read the API and the services make, in one place.

Each function takes a `Store` and returns plain rows (dicts), sorted as its callers show them.
The SQL conditions live here and nowhere outside ``meshmeet.store`` and ``meshmeet.meeting``.
This module must never write, and never read a table the question does not need.
"""

from __future__ import annotations

from typing import Any

from ..store.db import Store

Row = dict[str, Any]


def current_items(store: Store, meeting_id: str) -> list[Row]:
    """The agenda items of a meeting marked current (one, unless two sites raced)."""
    return store.rows("agenda_items", "meeting_id = ? AND status = 'current'", (meeting_id,))


def agenda(store: Store, meeting_id: str) -> list[Row]:
    """A meeting's agenda items in their order (position, then id)."""
    return sorted(store.rows("agenda_items", "meeting_id = ?", (meeting_id,)),
                  key=lambda r: (r["position"] if r["position"] is not None else 0, r["id"]))


def motions(store: Store, meeting_id: str) -> list[Row]:
    """A meeting's motions, in key order."""
    return store.rows("motions", "meeting_id = ?", (meeting_id,))


def speaking_requests(store: Store, meeting_id: str) -> list[Row]:
    """A meeting's speaking-queue rows, in key order."""
    return store.rows("speaking_queue", "meeting_id = ?", (meeting_id,))


def started_meetings(store: Store) -> list[Row]:
    """Meetings whose status is "started", by start time then id."""
    return sorted(store.rows("meetings", "status = 'started'"), key=lambda r: (r["starts"] or "", r["id"]))


def urgent_announcements_since(store: Store, text: str, since: float) -> list[Row]:
    """Urgent announcements with exactly this text made at or after `since` (wall time)."""
    return store.rows("announcements", "text = ? AND urgent = 1 AND at >= ?", (text, since))


def documents_of(store: Store, meeting_id: str) -> list[Row]:
    """Live documents under one meeting id (also the `release` id, which is no meeting row)."""
    return store.rows("documents", "meeting_id = ?", (meeting_id,))


def holders(store: Store, doc_id: str) -> set[str]:
    """Node ids that recorded holding a document whole (doc_holdings)."""
    return {r["node"] for r in store.rows("doc_holdings", "doc_id = ?", (doc_id,))}
