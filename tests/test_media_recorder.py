"""Recorder: append-only file on disk, fsync cadence, truncated tails, hostile bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.media import chunk as C
from meshmeet.recording.recorder import MAGIC, Recorder, RecordingError, read_records


def audio(seq: int) -> bytes:
    return C.encode(C.Chunk(0, 0, 0, True, 1, seq, seq * 20000, 20000, bytes([seq % 256]) * 20))


def test_records_what_arrived_in_order_with_arrival_times(tmp_path: Path) -> None:
    path = tmp_path / "m.mmrec"
    rec = Recorder(open(path, "ab"), now=100.0)
    cfg = C.encode(C.DecoderConfig(0, 0, 1, {"codec": "opus"}))
    rec.add(cfg, 100.0)
    for i in range(5):
        rec.add(audio(i), 100.0 + 0.02 * i)
    rec.add(C.encode(C.KeyframeRequest(0)), 100.2)  # not media: not recorded
    rec.add(C.encode(C.Padding(10)), 100.2)
    rec.close()
    recs = list(read_records(path.read_bytes()))
    assert [r.data for r in recs] == [cfg] + [audio(i) for i in range(5)]
    assert [r.at_us for r in recs] == [0, 0, 20000, 40000, 60000, 80000]


def test_fsync_about_every_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import meshmeet.recording.recorder as R

    syncs: list[int] = []
    monkeypatch.setattr(R.os, "fsync", lambda fd: syncs.append(fd))
    rec = Recorder(open(tmp_path / "m.mmrec", "ab"), now=0.0)
    for i in range(250):  # 5 s of audio
        rec.add(audio(i), i * 0.02)
    assert 4 <= len(syncs) <= 5
    # what was synced is on disk: a crash now loses at most the last second
    assert len(list(read_records((tmp_path / "m.mmrec").read_bytes()))) >= 200


def test_reopen_appends_and_truncated_tail_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "m.mmrec"
    r1 = Recorder(open(path, "ab"), now=0.0)
    r1.add(audio(0), 0.0)
    r1.close()
    r2 = Recorder(open(path, "ab"), now=5.0)
    r2.add(audio(1), 5.0)
    r2.close()
    data = path.read_bytes()
    assert data.count(MAGIC) == 1
    assert [r.data for r in read_records(data)] == [audio(0), audio(1)]
    assert [r.data for r in read_records(data[:-3])] == [audio(0)]


def test_not_a_recording() -> None:
    with pytest.raises(RecordingError):
        list(read_records(b"hello"))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_hostile_recording_bytes(tail: bytes) -> None:
    try:
        for r in read_records(MAGIC + tail):
            assert isinstance(r.data, bytes)
    except RecordingError:
        pass


def test_repeated_configs_are_recorded_once_changes_again(tmp_path: Path) -> None:
    path = tmp_path / "m.mmrec"
    rec = Recorder(open(path, "ab"), now=0.0)
    cfg1 = C.encode(C.DecoderConfig(0, 0, 1, {"codec": "opus"}))
    cfg2 = C.encode(C.DecoderConfig(0, 0, 2, {"codec": "opus", "sampleRate": 48000}))
    vcfg = C.encode(C.DecoderConfig(1, 0, 1, {"codec": "vp8"}))
    for data in (cfg1, vcfg, audio(0), cfg1, vcfg, cfg2, cfg2, cfg1):
        rec.add(data, 1.0)
    rec.close()
    assert [r.data for r in read_records(path.read_bytes())] == [cfg1, vcfg, audio(0), cfg2, cfg1]


def test_idle_sync_writes_the_tail_of_a_meeting(tmp_path: Path) -> None:
    path = tmp_path / "m.mmrec"
    rec = Recorder(open(path, "ab"), now=0.0)
    rec.add(audio(0), 0.1)
    rec.add(audio(1), 0.2)
    rec.idle_sync(0.5)  # not yet a second since the last sync
    assert audio(1) not in path.read_bytes()
    rec.idle_sync(1.0)
    assert [r.data for r in read_records(path.read_bytes())] == [audio(0), audio(1)]
    rec.close()
