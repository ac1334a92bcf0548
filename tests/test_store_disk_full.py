"""The store on a full disk: real SQLite files on a small real tmpfs (needs root; skipped otherwise).

A write or a received run of batches that does not fit is rolled back whole and raises DiskFull
(never a raw sqlite3 error); the file stays consistent; once space returns the same batches
apply and the node's own sequence numbers continue without a gap (a gap would stall every
peer's version vector for this origin). Also the recording store: a piece that does not fit is
not half-appended, and recording sync asks for it again later instead of starting over.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from meshmeet.store.diskfull import DiskFull, free_bytes, is_disk_full
from meshmeet.media import recsync as R
from meshmeet.recording.recstore import RecordingStore
from meshmeet.meeting import meetings as m
from meshmeet.store.batch import decode_batch
from smalldisk import mounted_tmpfs
from test_store import HALL1, HQ, mk

TMPFS_BYTES = 4 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path):
    with mounted_tmpfs(tmp_path, "fs", TMPFS_BYTES) as mnt:
        yield mnt


def fill(directory: Path) -> Path:
    """A filler file taking every free block."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert is_disk_full(e)
    assert free_bytes(directory) == 0
    return filler


def test_batches_that_do_not_fit_roll_back_whole_and_apply_later(small_disk: Path) -> None:
    hq = mk(HQ)
    mid = m.create_meeting(hq, "Họp")
    with hq.batch():
        for i in range(300):
            m.announce(hq, f"Thông báo {i} " + "x" * 2000)
    batches = [decode_batch(b.body, b.sig) for b in hq.batches_after({})]
    assert len(batches) > 5

    hall = mk(HALL1, small_disk / "state.sqlite")
    hall.apply(batches[:1])
    vector, digest = hall.version_vector(), hall.digest()
    filler = fill(small_disk)
    with pytest.raises(DiskFull) as err:
        hall.apply(batches[1:])
    assert "đầy" in err.value.vi and "disk is full" in err.value.en
    assert hall.version_vector() == vector and hall.digest() == digest  # nothing of the run is held
    with pytest.raises(DiskFull):
        m.checkin(hall, mid, 3)
    assert hall.integrity_ok()

    filler.unlink()
    report = hall.apply(batches[1:])  # asked again after the vector exchange: all of it applies
    assert report.batches_applied == len(batches) - 1
    assert hall.version_vector() == hq.version_vector() and hall.digest() == hq.digest()
    m.checkin(hall, mid, 3)
    own = [b for b in hall.batches_after({}) if b.origin == HALL1.node_id]
    assert [(b.first_seq, b.last_seq) for b in own] == [(1, 1)]  # no gap left by the failed write
    assert hall.version_vector()[HALL1.node_id] == 1
    assert hall.integrity_ok()
    hall.close()


def test_a_recording_piece_that_does_not_fit_is_fetched_again_not_restarted(small_disk: Path) -> None:
    rec = RecordingStore(small_disk / "recordings")
    data = os.urandom(3 * R.PIECE_BYTES)
    info = R.RecordingInfo("hop-1", len(data), hashlib.sha256(data).digest())
    sync = R.RecordingSync()
    sync.peer_up("hq")
    sync.receive("hq", R.encode(R.RecList((info,))))

    def step(now: float) -> R.RecGet | None:
        """One poll of the core, as media_service does it: verify what is whole, return the get."""
        gets = []
        for a in sync.poll(now, ["hq"]):
            if isinstance(a, R.Send):
                gets.append(R.parse(a.body))
            elif isinstance(a, R.Verify):
                sync.verified(a.name, rec.finish(a.name, a.size, a.sha256))
        return gets[0] if gets else None

    def deliver(get: R.RecGet) -> bool:
        """The piece arrives; the driver writes it (as media_service does); False if it did not fit."""
        for a in sync.receive("hq", R.encode(R.RecPiece(get.name, get.offset, data[get.offset:get.offset + get.length]))):
            if isinstance(a, R.Write):
                try:
                    rec.append_part(a.name, a.offset, a.data)
                except OSError as e:
                    assert is_disk_full(e)
                    sync.abandon(a.name)
                    return False
        return True

    first = step(0.0)
    assert deliver(first)
    piece = first.length  # pieces are sized by how fast they come (no clock here: the first size)
    filler = fill(small_disk)
    get = step(1.0)
    assert get.offset == piece and not deliver(get)
    assert rec.partials() == {"hop-1": piece}  # the piece that did not fit left nothing behind
    assert step(1.5) is None  # not asked again at once: the disk is still full
    filler.unlink()
    again = step(1.5 + R.WRITE_RETRY_S)
    assert again.offset == piece  # resumed where it was, not from 0
    assert deliver(again)
    now = 2.0 + R.WRITE_RETRY_S
    while (get := step(now)) is not None:  # the rest, piece by piece; the last poll verifies the file
        assert deliver(get)
        now += 1.0
    assert (small_disk / "recordings" / "hop-1.mmrec").read_bytes() == data
    assert sync.status()["counters"]["fetched"] == 1


def test_the_live_recording_drops_what_does_not_fit_and_goes_on(small_disk: Path) -> None:
    from meshmeet.media import chunk as C
    from meshmeet.recording.recorder import DISK_RETRY_S, FSYNC_INTERVAL_S, Recorder, read_records

    def audio(i: int) -> bytes:
        return C.encode(C.Chunk(0, 0, 0, True, 1, i, i * 20000, 20000, bytes([i % 256]) * 4000))

    path = small_disk / "hop.mmrec"
    rec = Recorder(open(path, "ab"), now=0.0)
    rec.add(audio(0), 0.0)
    rec.sync(0.0)
    filler = fill(small_disk)
    now = 0.0
    for i in range(1, 200):  # 4 s of records that cannot be written: never an exception
        now = i * 0.02
        rec.add(audio(i), now)
    rec.sync(now)
    assert rec.dropped > 0 and rec.disk_full_at is not None
    assert [r.data for r in read_records(path.read_bytes())] == [audio(0)]  # whole records only
    filler.unlink()
    later = now + DISK_RETRY_S
    rec.add(audio(500), later)
    rec.sync(later + FSYNC_INTERVAL_S)
    rec.close()
    got = [r.data for r in read_records(path.read_bytes())]
    assert got == [audio(0), audio(500)] and rec.disk_full_at is None


def test_a_store_closed_cleanly_opens_again_on_a_full_disk_for_this_process_alone(small_disk: Path) -> None:
    import sqlite3

    hq = mk(HQ)
    mid = m.create_meeting(hq, "Họp")
    hall = mk(HALL1, small_disk / "state.sqlite")
    hall.apply([decode_batch(b.body, b.sig) for b in hq.batches_after({})])
    hall.close()  # a clean close removes state.sqlite-shm; making it again needs free space
    fill(small_disk)
    with pytest.raises(sqlite3.OperationalError):
        mk(HALL1, small_disk / "state.sqlite")
    again = mk(HALL1, small_disk / "state.sqlite", exclusive=True)  # what SyncService falls back to
    assert again.get("meetings", mid)["title"] == "Họp" and again.integrity_ok()
    with pytest.raises(DiskFull):
        m.checkin(again, mid, 1)
    again.close()


def test_what_counts_as_a_full_disk() -> None:
    import errno
    import sqlite3

    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL
    assert is_disk_full(full) and is_disk_full(OSError(errno.ENOSPC, "x")) and is_disk_full(OSError(errno.EDQUOT, "x"))
    assert is_disk_full(DiskFull())
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(OSError(errno.EACCES, "x")) and not is_disk_full(ValueError("full"))
    assert free_bytes("/nonexistent/path") == -1 and free_bytes("/") >= 0
