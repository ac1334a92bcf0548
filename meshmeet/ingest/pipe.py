"""Framing between the node and its ingest worker process (the worker's stdin and stdout).

A frame is `type (1 B) + length (u32 big-endian) + body`. Worker → node: `M` a media message
(chunk or decoder config, meshmeet/media/chunk.py), `S` a status event (UTF-8 JSON object).
Node → worker: `M` an upstream media message (keyframe or audio rate request). `FrameReader` is
sans-IO: bytes in, frames out; anything malformed (unknown type, oversized, bad JSON) raises
PipeError and the driver stops that worker. This module must never do I/O.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from ..media.chunk import MAX_MESSAGE_BYTES

MEDIA = b"M"
STATUS = b"S"
HEADER = struct.Struct(">cI")
MAX_STATUS_BYTES = 8192
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES


class PipeError(Exception):
    """The other side of the pipe sent something this protocol does not allow."""


@dataclass(frozen=True)
class Frame:
    type: bytes  # MEDIA or STATUS
    body: bytes

    def status(self) -> dict:
        """The JSON object of a STATUS frame."""
        try:
            obj = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise PipeError(f"status frame is not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise PipeError("status frame is not a JSON object")
        return obj


def encode(type_: bytes, body: bytes) -> bytes:
    if type_ not in (MEDIA, STATUS):
        raise ValueError(f"frame type {type_!r}")
    limit = MAX_STATUS_BYTES if type_ == STATUS else MAX_FRAME_BYTES
    if len(body) > limit:
        raise ValueError(f"frame of {len(body)} B exceeds {limit} B")
    return HEADER.pack(type_, len(body)) + body


def encode_status(event: dict) -> bytes:
    return encode(STATUS, json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


class FrameReader:
    """Feed it bytes as they arrive; it returns the whole frames they complete."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while len(self._buf) >= HEADER.size:
            type_, length = HEADER.unpack_from(self._buf)
            if type_ not in (MEDIA, STATUS):
                raise PipeError(f"unknown frame type {type_!r}")
            if length > (MAX_STATUS_BYTES if type_ == STATUS else MAX_FRAME_BYTES):
                raise PipeError(f"frame of {length} B is too long")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            out.append(Frame(type_, bytes(self._buf[HEADER.size:end])))
            del self._buf[:end]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
