"""Whether the disk under the data dir is full, and when sync should look again.

`DiskWatch` keeps when the disk was found full (wall time, for status) and when to look at the
free space next; `space_back(now)` says when sync may resume (DISK_RESUME_FREE_BYTES free).
`open_store` opens the store, on a disk too full for its shared-memory file for this process
alone (and marks the disk full) rather than not at all. What pausing and resuming do (closing
sessions, redialling links) is node/sync_service.py's. This module must never write to the
store, and never decide that the disk is writable without asking the OS.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from ..membership.identity import KeyPair
from ..store.chunks import CHUNK_BYTES
from ..meeting.replica import open_store
from ..store.db import Store
from ..store.diskfull import free_bytes

log = logging.getLogger("meshmeet.node.sync_service")

DISK_RETRY_S = 2.0             # while the disk is full, look at the free space this often
DISK_RESUME_FREE_BYTES = 4 * CHUNK_BYTES  # sync resumes once this much is free again


class DiskWatch:
    """The full-disk state of one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.full_since: float | None = None  # wall time the disk was found full; None: writable
        self.retry_at = math.inf  # when to look at the free space again (trio time)

    @property
    def full(self) -> bool:
        return self.full_since is not None

    def open_store(self, path: Path, key: KeyPair, authority: Callable[[str], str | None]) -> Store:
        """The store; on a disk too full for its shared-memory file, opened for this process
        alone (and the disk marked full: sync starts paused) rather than not at all."""
        try:
            return open_store(path, key, authority)
        except sqlite3.OperationalError as e:
            if not 0 <= free_bytes(self.data_dir) < DISK_RESUME_FREE_BYTES:
                raise
            log.error("sync: the disk is full (%s): the store is opened for this process alone", e)
            self.full_since = time.time()
            self.retry_at = -math.inf  # look at the free space as soon as the loop runs
            return open_store(path, key, authority, exclusive=True)

    def found_full(self, now: float) -> None:
        """The store could not write (it rolled back): look again after DISK_RETRY_S."""
        if self.full_since is None:
            self.full_since = time.time()
            log.error("sync: the disk is full (%d bytes free): sync paused until %d bytes are free",
                      free_bytes(self.data_dir), DISK_RESUME_FREE_BYTES)
        self.retry_at = now + DISK_RETRY_S

    def due(self, now: float) -> bool:
        """Whether it is time to look at the free space again."""
        return self.full_since is not None and now >= self.retry_at

    def space_back(self, now: float) -> bool:
        """Look at the free space: True (and the disk no longer full) once enough is free."""
        free = free_bytes(self.data_dir)
        if 0 <= free < DISK_RESUME_FREE_BYTES:
            self.retry_at = now + DISK_RETRY_S
            return False
        log.info("sync: %d bytes free again: sync resumes", free)
        self.full_since = None
        self.retry_at = math.inf
        return True

    def status(self) -> dict[str, Any]:
        """The "disk" part of status (docs/api.md)."""
        return {"state": "ok" if self.full_since is None else "disk_full",
                "free_bytes": free_bytes(self.data_dir), "full_since": self.full_since,
                "resume_free_bytes": DISK_RESUME_FREE_BYTES}
