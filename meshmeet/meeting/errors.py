"""The meeting domain's refusals, each with the code the HTTP API answers with.

The domain decides (meetings.py); the API only maps: `NotFound` -> 404, `Conflict` -> 409 with
its `code`, any other SyncError -> 400 (AuthorityError -> 403). This module must never hold
state or know about HTTP beyond the stable `code` strings documented in docs/api.md.
"""

from __future__ import annotations

from ..store.errors import SyncError


class NotFound(SyncError):
    """A row the operation names does not exist."""

    def __init__(self, what_vi: str, what_en: str, key: object) -> None:
        super().__init__(f"Không tìm thấy {what_vi} {key}", f"no such {what_en}: {key}")


class Conflict(SyncError):
    """The operation conflicts with the state as it is (a closed motion, a second ballot, ...)."""

    def __init__(self, code: str, vi: str, en: str) -> None:
        super().__init__(vi, en)
        self.code = code
