"""Bodies of media datagrams (sans-IO): audio with redundancy, video pieces, probe acks, receiver reports.

Layouts in docs/protocol/media.md ("Datagrams"). Audio redundancy is RFC 2198's idea with the
chunk header as the only header: an earlier audio chunk rides along as `seq back (u8), timestamp
back (u24, µs), payload length (u16), payload`, its other header fields equal to the primary's
(a chunk that differs in stream byte, generation or duration is not carried), so a copy costs
6 B plus its Opus payload. This module must never do I/O, keep state, or raise anything but
DatagramError for bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import chunk as C
from .datagram import DatagramError

MAX_REDUNDANCY = 3  # earlier audio chunks one datagram may carry
VIDEO_HEADER_BYTES = 5  # layer u8, frame number u16, index u8, count u8
MAX_PIECES = 255

_RED = struct.Struct(">B3sH")  # seq back, timestamp back (u24), payload length
_VIDEO = struct.Struct(">BHBB")
_ACK = struct.Struct(">II")  # echoed send time, hold time (µs)
_REPORT = struct.Struct(">IIIiII")


def _u32(x: int) -> int:
    return max(0, min(x, 0xFFFFFFFF))


def _chunk_fields(data: bytes) -> tuple[int, int]:
    seq = int.from_bytes(data[3:7], "big")
    ts = (data[11] << 32) | int.from_bytes(data[7:11], "big")
    return seq, ts


def redundant_fits(primary: bytes, earlier: bytes) -> bool:
    """Whether `earlier` (an audio chunk) can ride along with `primary` as a redundant block."""
    if len(earlier) < C.CHUNK_HEADER_BYTES or earlier[1:3] != primary[1:3] or earlier[12:14] != primary[12:14]:
        return False
    seq, ts = _chunk_fields(primary)
    eseq, ets = _chunk_fields(earlier)
    return 1 <= seq - eseq <= 0xFF and 0 <= ts - ets < 1 << 24 and len(earlier) - C.CHUNK_HEADER_BYTES <= 0xFFFF


def encode_audio(primary: bytes, earlier: list[bytes]) -> bytes:
    """An audio datagram body: `primary` (an audio chunk) with `earlier` chunks, oldest first,
    each of which must pass `redundant_fits`."""
    seq, ts = _chunk_fields(primary)
    out = bytearray([len(earlier)])
    for e in earlier:
        if not redundant_fits(primary, e):
            raise ValueError("chunk cannot be carried as redundancy")
        eseq, ets = _chunk_fields(e)
        out += _RED.pack(seq - eseq, (ts - ets).to_bytes(3, "big"), len(e) - C.CHUNK_HEADER_BYTES)
        out += e[C.CHUNK_HEADER_BYTES:]
    return bytes(out + primary)


def decode_audio(body: bytes) -> list[bytes]:
    """The chunks in an audio datagram body, oldest first (the primary last)."""
    if not body or body[0] > MAX_REDUNDANCY:
        raise DatagramError("malformed", "audio redundancy depth")
    blocks: list[tuple[int, int, bytes]] = []
    pos = 1
    for _ in range(body[0]):
        if len(body) < pos + _RED.size:
            raise DatagramError("malformed", "short redundant block")
        back, ts_back, n = _RED.unpack_from(body, pos)
        pos += _RED.size
        if len(body) < pos + n or back == 0:
            raise DatagramError("malformed", "redundant block")
        blocks.append((back, int.from_bytes(ts_back, "big"), body[pos:pos + n]))
        pos += n
    primary = bytes(body[pos:])
    try:
        info = C.peek_chunk(primary)
    except C.MediaFormatError:
        raise DatagramError("malformed", "audio primary is not a chunk") from None
    if info.track != C.TRACK_AUDIO:
        raise DatagramError("malformed", "audio datagram with a video chunk")
    seq, ts = _chunk_fields(primary)
    out = []
    for back, ts_back, payload in blocks:
        if back > seq or ts_back > ts:
            raise DatagramError("malformed", "redundant block before the stream began")
        eseq, ets = seq - back, ts - ts_back
        header = primary[:3] + eseq.to_bytes(4, "big") + (ets & 0xFFFFFFFF).to_bytes(4, "big") + bytes([ets >> 32]) + primary[12:14]
        out.append(header + payload)
    return out + [primary]


@dataclass(frozen=True)
class VideoPiece:
    layer: int
    frame: int  # u16, counts the video chunks of this layer sent on the channel
    index: int
    count: int
    piece: bytes


def encode_video(p: VideoPiece) -> bytes:
    return _VIDEO.pack(p.layer, p.frame, p.index, p.count) + p.piece


def decode_video(body: bytes) -> VideoPiece:
    if len(body) < VIDEO_HEADER_BYTES + 1:
        raise DatagramError("malformed", "short video piece")
    layer, frame, index, count = _VIDEO.unpack_from(body)
    if layer not in (C.LAYER_HIGH, C.LAYER_LOW) or count == 0 or index >= count:
        raise DatagramError("malformed", "video piece header")
    return VideoPiece(layer, frame, index, count, bytes(body[VIDEO_HEADER_BYTES:]))


@dataclass(frozen=True)
class ProbeAck:
    echo_us: int  # the probe's send time
    hold_us: int  # how long the probe waited at the answering side


def encode_ack(a: ProbeAck) -> bytes:
    return _ACK.pack(a.echo_us & 0xFFFFFFFF, _u32(a.hold_us))


def decode_ack(body: bytes) -> ProbeAck:
    if len(body) != _ACK.size:
        raise DatagramError("malformed", "probe ack length")
    return ProbeAck(*_ACK.unpack(body))


@dataclass(frozen=True)
class Report:
    """Receiver report on one direction, cumulative since the channel began."""

    highest: int  # highest counter received
    received: int  # datagrams accepted (authentic, not replayed)
    jitter_us: int  # RFC 3550 interarrival jitter
    delay_trend_us: int  # recent mean one-way delay above the lowest seen in the last window (signed)
    echo_us: int  # send time of the newest datagram received
    hold_us: int  # since that datagram arrived


def encode_report(r: Report) -> bytes:
    clamp = max(-(1 << 31), min(r.delay_trend_us, (1 << 31) - 1))
    return _REPORT.pack(r.highest, r.received & 0xFFFFFFFF, _u32(r.jitter_us), clamp,
                        r.echo_us & 0xFFFFFFFF, _u32(r.hold_us))


def decode_report(body: bytes) -> Report:
    if len(body) != _REPORT.size:
        raise DatagramError("malformed", "report length")
    return Report(*_REPORT.unpack(body))
