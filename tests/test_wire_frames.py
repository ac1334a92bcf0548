"""Transport frames: round trips, overhead, and every way a frame can be wrong."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.wire.events import CloseCode
from meshmeet.wire.frames import (
    FRAME_OVERHEAD_BYTES,
    MAX_FRAME_BYTES,
    FrameError,
    FrameOpener,
    FrameSealer,
    FrameType,
    nonce_of,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def pair(max_frame_bytes: int = MAX_FRAME_BYTES) -> tuple[FrameSealer, FrameOpener]:
    return FrameSealer(KEY, max_frame_bytes), FrameOpener(KEY, max_frame_bytes)


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(st.tuples(st.sampled_from(list(FrameType)), st.binary(max_size=300)), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
)
def test_frames_round_trip_whatever_the_chunking(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    sealer, opener = pair()
    wire = b"".join(sealer.seal(t, body) for t, body in frames)
    assert len(wire) == sum(len(body) + FRAME_OVERHEAD_BYTES for _, body in frames)
    buffer = bytearray()
    received = []
    points = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    for start, end in zip(points, points[1:]):
        buffer += wire[start:end]
        while (frame := opener.open_next(buffer)) is not None:
            received.append(frame)
    assert received == [(int(t), body) for t, body in frames]
    assert buffer == bytearray()


def test_overhead_is_19_bytes_and_the_length_counts_type_and_body() -> None:
    sealer, _ = pair()
    frame = sealer.seal(FrameType.DATA, b"x" * 100)
    assert len(frame) - 100 == FRAME_OVERHEAD_BYTES == 19
    assert int.from_bytes(frame[:2], "big") == 101


def test_largest_frame_fits_and_one_more_byte_is_refused() -> None:
    sealer, opener = pair()
    frame = sealer.seal(FrameType.DATA, b"\x00" * (MAX_FRAME_BYTES - 1))
    assert opener.open_next(bytearray(frame)) == (0, b"\x00" * (MAX_FRAME_BYTES - 1))
    with pytest.raises(ValueError):
        sealer.seal(FrameType.DATA, b"\x00" * MAX_FRAME_BYTES)
    assert sealer.sequence == 1  # the refused frame used no nonce


def expect_error(opener: FrameOpener, data: bytes, code: int) -> None:
    with pytest.raises(FrameError) as info:
        opener.open_next(bytearray(data))
    assert info.value.code == code


def test_oversized_and_empty_length_prefixes_are_refused_before_the_body_arrives() -> None:
    _, opener = pair(max_frame_bytes=1000)
    expect_error(opener, (1001).to_bytes(2, "big"), CloseCode.FRAME_TOO_LARGE)
    expect_error(opener, b"\x00\x00", CloseCode.PROTOCOL_ERROR)
    assert opener.open_next(bytearray((1000).to_bytes(2, "big"))) is None  # allowed, incomplete


def test_tampered_reordered_replayed_dropped_or_foreign_frames_fail_the_tag() -> None:
    sealer, _ = pair()
    first, second = sealer.seal(FrameType.DATA, b"one"), sealer.seal(FrameType.DATA, b"two")
    for index in range(len(first)):
        tampered = bytearray(first)
        tampered[index] ^= 0x80
        if index < 2:  # a changed length makes it a different (incomplete or bad) frame
            opener = FrameOpener(KEY)
            try:
                assert opener.open_next(tampered) is None
            except FrameError as error:
                assert error.code in (CloseCode.DECRYPT_FAILED, CloseCode.FRAME_TOO_LARGE, CloseCode.PROTOCOL_ERROR)
            continue
        expect_error(FrameOpener(KEY), bytes(tampered), CloseCode.DECRYPT_FAILED)
    expect_error(FrameOpener(KEY), second, CloseCode.DECRYPT_FAILED)  # reordered / first dropped
    replay = FrameOpener(KEY)
    assert replay.open_next(bytearray(first)) == (0, b"one")
    expect_error(replay, first, CloseCode.DECRYPT_FAILED)  # replayed
    expect_error(FrameOpener(OTHER_KEY), first, CloseCode.DECRYPT_FAILED)


def test_nonce_layout() -> None:
    assert nonce_of(0) == bytes(12)
    assert nonce_of(1) == bytes(4) + b"\x01" + bytes(7)
    assert nonce_of(2**64 - 1) == bytes(4) + b"\xff" * 8


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_bytes_give_only_frame_errors(data: bytes) -> None:
    opener = FrameOpener(KEY, max_frame_bytes=150)
    buffer = bytearray(data)
    try:
        while opener.open_next(buffer) is not None:
            pass
    except FrameError as error:
        assert error.code in (CloseCode.DECRYPT_FAILED, CloseCode.FRAME_TOO_LARGE, CloseCode.PROTOCOL_ERROR)
