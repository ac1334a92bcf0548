"""What "the disk is full" looks like to meshmeet: one error type, how to recognise it, free space.

SQLite reports a full disk as SQLITE_FULL ("database or disk is full"), plain file writes as
OSError ENOSPC (or EDQUOT on a quota). `is_disk_full` recognises both; the store turns them
into `DiskFull` after rolling its transaction back, the node keeps running, its status says
so and its API answers 507. This module must never write anything or hold state.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from ..errors import MeshmeetError

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFull(MeshmeetError):
    """A write failed because the disk (or quota) is full; nothing of it was kept."""

    def __init__(self, what_vi: str = "dữ liệu", what_en: str = "data") -> None:
        super().__init__(f"Ổ đĩa của điểm này đã đầy, không lưu được {what_vi}; hãy giải phóng dung lượng",
                         f"this node's disk is full, {what_en} could not be stored; free some space")


def is_disk_full(exc: BaseException) -> bool:
    """Is this exception a full disk (DiskFull, SQLITE_FULL, ENOSPC or EDQUOT)?"""
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def free_bytes(path: str | Path) -> int:
    """Bytes an unprivileged process may still write on the file system holding `path` (-1 if unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize
