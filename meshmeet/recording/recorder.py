"""Recordings: the media messages a node relayed, as they arrived, in an append-only file.

Format (docs/protocol/media.md): magic b"MMREC1\\n\\0", then records of u32 length, u64 arrival
time in µs since the recording began, and the media message. `Recorder` collects records and
appends them to the file it is given (opened "ab") and fsyncs when at least FSYNC_INTERVAL_S has
passed (a crash loses at most the last second); `read_records` parses bytes. On a full disk the
records that did not fit are dropped whole (the file is cut back to its last whole record and
the recording has a hole; writing is tried again every DISK_RETRY_S): the live meeting goes on.
Neither reads a clock (callers pass `now`) nor ever rewrites what was written; reading never
raises on a truncated tail.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from meshmeet.store.diskfull import is_disk_full
from meshmeet.errors import MeshmeetError
from meshmeet.media import chunk as C

MAGIC = b"MMREC1\n\0"
FSYNC_INTERVAL_S = 1.0
DISK_RETRY_S = 5.0  # after records were dropped on a full disk, collect and write again after this long
_REC = struct.Struct(">IQ")
KIND_SLIDE_RECORD = 0x13  # the page on the hall TVs (meshmeet/slides/record.py): recorded with the media


class RecordingError(MeshmeetError):
    def __init__(self, en: str) -> None:
        super().__init__("Bản ghi cuộc họp bị hỏng", en)


@dataclass(frozen=True)
class Record:
    at_us: int
    data: bytes


class Recorder:
    """Appends records to `f` (opened "ab"); call `close()` to fsync and close."""

    def __init__(self, f: BinaryIO, now: float) -> None:
        self._f = f
        self._fd = f.fileno()
        self._pending = bytearray(MAGIC if os.fstat(self._fd).st_size == 0 else b"")  # not written yet
        self._pending_records = 0
        self._t0 = now
        self._last_sync = now
        self._configs: dict[int, bytes] = {}  # stream byte -> last config recorded
        self._dirty = False
        self.records = 0
        self.dropped = 0  # records lost to a full disk
        self.disk_full_at: float | None = None  # when records were last dropped; None: writing

    def add(self, data: bytes, now: float) -> None:
        """Record a chunk, config or slide record (other kinds, and a config equal to the last one of
        its stream, are not)."""
        if not data or data[0] not in (C.KIND_CHUNK, C.KIND_CONFIG, KIND_SLIDE_RECORD):
            return
        if data[0] == C.KIND_CONFIG:
            if len(data) < 2 or self._configs.get(data[1]) == data:
                return  # the holder repeats its configs every few seconds: record a change only
            self._configs[data[1]] = bytes(data)
        if self.disk_full_at is not None and now - self.disk_full_at < DISK_RETRY_S:
            self.dropped += 1
            return
        at_us = max(0, round((now - self._t0) * 1_000_000))
        self._pending += _REC.pack(len(data), at_us) + data
        self._pending_records += 1
        self.records += 1
        self._dirty = True
        if now - self._last_sync >= FSYNC_INTERVAL_S:
            self.sync(now)

    def idle_sync(self, now: float) -> None:
        """Call about once a second: syncs records that came after the last sync (the tail of a meeting)."""
        if self._dirty and now - self._last_sync >= FSYNC_INTERVAL_S:
            self.sync(now)

    def fileno(self) -> int:
        return self._f.fileno()

    def sync(self, now: float) -> None:
        if self._write(now):
            os.fsync(self._fd)
        self._last_sync = now
        self._dirty = False

    def close(self) -> None:
        if self._write(self._last_sync):
            os.fsync(self._fd)
        self._f.close()

    def _write(self, now: float) -> bool:
        """Append what was collected; False (nothing of it kept) if the disk is full."""
        if not self._pending:
            return True
        whole = os.fstat(self._fd).st_size
        try:
            data, done = bytes(self._pending), 0
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as e:
            if not is_disk_full(e):
                raise
            os.ftruncate(self._fd, whole)  # never half a record
            self.dropped += self._pending_records
            self.records -= self._pending_records
            self._pending = bytearray(MAGIC if whole == 0 else b"")
            self._pending_records = 0
            self._configs.clear()  # the next config repeat is recorded again, after the hole
            self.disk_full_at = now
            return False
        self._pending.clear()
        self._pending_records = 0
        self.disk_full_at = None
        return True


def read_records(data: bytes) -> Iterator[Record]:
    """Records in order; stops quietly at a truncated last record (a crash mid-write)."""
    if not data.startswith(MAGIC):
        raise RecordingError("not a meshmeet recording (bad magic)")
    off = len(MAGIC)
    while off + _REC.size <= len(data):
        n, at_us = _REC.unpack_from(data, off)
        end = off + _REC.size + n
        if n > C.MAX_MESSAGE_BYTES:
            raise RecordingError("record longer than any media message")
        if end > len(data):
            return
        yield Record(at_us, data[off + _REC.size:end])
        off = end
