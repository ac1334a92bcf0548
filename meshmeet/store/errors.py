"""Errors raised by the replicated store and the sync protocol.

SyncError is what an operator sees (bilingual, via MeshmeetError); ProtocolError is what
hostile or malformed bytes from a peer turn into. This module must never log or hold state.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MeshmeetError


@dataclass(frozen=True)
class Rejection:
    """Why a change is refused (by the rules the store was opened with: meshmeet.meeting.rules);
    `authority` tells a missing right from a malformed change."""

    authority: bool
    vi: str
    en: str


class SyncError(MeshmeetError):
    """A write or read on the replicated store could not be done."""


class AuthorityError(SyncError):
    """The local node's role does not allow this change (e.g. a hall opening a motion)."""


class ProtocolError(SyncError):
    """Bytes from a peer are not a valid sync message or batch."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Dữ liệu đồng bộ không hợp lệ: {reason}", f"invalid sync data: {reason}")
        self.reason = reason
