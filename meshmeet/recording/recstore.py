"""The recordings directory as recording sync (recsync.py) sees it: complete files, partial downloads.

`RecordingStore(dir)` lists DIR/NAME.mmrec with size and sha256 (hashes cached by size and
mtime, so a rescan of unchanged files reads nothing), reads pieces of them, appends fetched
pieces to DIR/NAME.mmrec.part, and on `finish` checks the partial file's sha256 and renames it
over NAME.mmrec (atomic; a failed check deletes it). Plain blocking file I/O: drivers call the
slow parts (`scan`, `finish`) in a worker thread. It never writes a complete recording in place,
never touches a name that is not a meeting id, and never leaves half a piece in a partial file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from meshmeet.media.recsync import NAME_RE, RecordingInfo

SUFFIX = ".mmrec"
PART_SUFFIX = ".mmrec.part"
_HASH_BLOCK_BYTES = 1 << 20


def _sha256_prefix(path: Path, size: int) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left > 0:
            block = f.read(min(_HASH_BLOCK_BYTES, left))
            if not block:
                break
            h.update(block)
            left -= len(block)
    return h.digest()


class RecordingStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._hashes: dict[str, tuple[int, int, bytes]] = {}  # name -> (size, mtime_ns, sha256)

    def _path(self, name: str, suffix: str = SUFFIX) -> Path:
        if not NAME_RE.match(name):
            raise ValueError(f"not a meeting id: {name!r}")
        return self.dir / f"{name}{suffix}"

    def scan(self, skip: frozenset[str] = frozenset()) -> list[RecordingInfo]:
        """Complete recordings (all NAME.mmrec but those in `skip`), hashed as they are now."""
        out = []
        if not self.dir.is_dir():
            return out
        for p in sorted(self.dir.glob(f"*{SUFFIX}")):
            name = p.name[: -len(SUFFIX)]
            if name in skip or not NAME_RE.match(name):
                continue
            try:
                st = p.stat()
                cached = self._hashes.get(name)
                if cached is None or cached[:2] != (st.st_size, st.st_mtime_ns):
                    cached = (st.st_size, st.st_mtime_ns, _sha256_prefix(p, st.st_size))
                    self._hashes[name] = cached
            except OSError:
                continue
            out.append(RecordingInfo(name, cached[0], cached[2]))
        return out

    def partials(self) -> dict[str, int]:
        """Partial downloads left by an earlier run: name -> bytes."""
        if not self.dir.is_dir():
            return {}
        out = {}
        for p in self.dir.glob(f"*{PART_SUFFIX}"):
            name = p.name[: -len(PART_SUFFIX)]
            if NAME_RE.match(name):
                out[name] = p.stat().st_size
        return out

    def read(self, name: str, offset: int, length: int) -> bytes:
        with open(self._path(name), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def append_part(self, name: str, offset: int, data: bytes) -> None:
        """Append at `offset`, which must be the partial file's length (OSError otherwise). A piece
        that cannot be written whole (ENOSPC) is cut off again: the file stays `offset` bytes."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self._path(name, PART_SUFFIX), "ab", buffering=0) as f:
            if f.tell() != offset:
                raise OSError(f"partial {name} is {f.tell()} bytes, piece at {offset}")
            try:
                view = memoryview(data)
                while view:
                    view = view[f.write(view):]
            except OSError:
                f.truncate(offset)
                raise

    def finish(self, name: str, size: int, sha256: bytes) -> bool:
        """Verify the partial file; if it matches, fsync and rename it over NAME.mmrec."""
        part = self._path(name, PART_SUFFIX)
        try:
            ok = part.stat().st_size == size and _sha256_prefix(part, size) == sha256
            if ok:
                with open(part, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(part, self._path(name))
            else:
                part.unlink()
        except OSError:
            return False
        return ok
