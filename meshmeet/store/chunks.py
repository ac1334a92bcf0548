"""Content-addressed document chunks: splitting a file and naming its pieces.

A document is cut into CHUNK_BYTES pieces, each named by its SHA-256; the document row
lists the names (32 bytes each, concatenated). Identical content is therefore held once.
This module must never touch the database or the network.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO, Iterator

CHUNK_BYTES = 256 * 1024
HASH_BYTES = 32
MAX_DOCUMENT_BYTES = 200 * 1024 * 1024


def chunk_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split(stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[bytes, bytes]]:
    """(sha256, data) for each piece of the stream, in order."""
    while True:
        data = stream.read(chunk_bytes)
        if not data:
            return
        yield chunk_hash(data), data


def join_hashes(hashes: list[bytes]) -> bytes:
    return b"".join(hashes)


def parse_hashes(blob: bytes | None) -> list[bytes]:
    """The chunk names in a document row (an empty list for a malformed one)."""
    if not blob or len(blob) % HASH_BYTES:
        return []
    return [blob[i:i + HASH_BYTES] for i in range(0, len(blob), HASH_BYTES)]
