"""The offline bundle's manifest: what files a bundle holds and their sha256, and the checks.

This file runs in two places: inside meshmeet (`meshmeet bundle`, the tests) and, copied into the
bundle as `verify_bundle.py`, under the hall box's plain system python3 before meshmeet exists there
(`install.sh` runs `python3 verify_bundle.py DIR` first). So it imports only the standard library.
It must never install, extract or change anything: it reads and says yes or no, and a no is one
clear line (Vietnamese / English) naming the file. The format is in docs/install.md.

The manifest catches a damaged or altered copy (a bad USB stick, a truncated download, a file
swapped or added by hand). It does not prove who made the bundle: that is the release signature's job.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

FORMAT = "meshmeet-bundle/1"
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILES = 2000
MAX_FILE_BYTES = 1 << 31
MAX_PATH_CHARS = 255
ARCHES = ("x86_64", "aarch64")
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]{0,63}\Z")
_CHUNK_BYTES = 1 << 20

try:  # inside meshmeet: one error type for the CLI; standalone (verify_bundle.py): a plain Exception
    from ..errors import MeshmeetError as _Base
except ImportError:  # pragma: no cover - exercised by install.sh
    class _Base(Exception):  # type: ignore[no-redef]
        exit_code = 1

        def __init__(self, vi: str, en: str) -> None:
            super().__init__(f"{vi} / {en}")
            self.vi, self.en = vi, en


class BundleError(_Base):
    """The bundle or its manifest is damaged, altered or not a meshmeet bundle."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    version: str
    python: str
    arches: tuple[str, ...]
    files: tuple[FileEntry, ...]

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT, "version": self.version, "python": self.python, "arches": list(self.arches),
            "files": {f.path: {"sha256": f.sha256, "size": f.size} for f in sorted(self.files, key=lambda f: f.path)},
        }
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def _bad(vi: str, en: str) -> BundleError:
    return BundleError(f"Gói cài đặt hỏng: {vi}", f"the bundle is damaged: {en}")


def check_path(path: object) -> str:
    """A file name inside the bundle: relative, POSIX, plain characters, no `..`; else BundleError."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
        raise _bad(f"tên tệp không hợp lệ {path!r}", f"invalid file name {path!r}")
    parts = path.split("/")
    if any(not _PATH_PART.match(p) or p in (".", "..") for p in parts) or path == MANIFEST_NAME:
        raise _bad(f"tên tệp không hợp lệ {path!r}", f"invalid file name {path!r}")
    return path


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest.json bytes; any deviation from the format is a BundleError, never another error."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise _bad("manifest.json quá lớn", "manifest.json is too large")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad("manifest.json không phải JSON", "manifest.json is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(f"không phải manifest {FORMAT}", f"not a {FORMAT} manifest")
    version, python, arches, files = doc.get("version"), doc.get("python"), doc.get("arches"), doc.get("files")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise _bad("phiên bản không hợp lệ", f"invalid version {version!r}")
    if not isinstance(python, str) or not re.fullmatch(r"3\.[0-9]{1,2}", python):
        raise _bad("phiên bản Python không hợp lệ", f"invalid python version {python!r}")
    if (not isinstance(arches, list) or not arches or len(set(map(str, arches))) != len(arches)
            or any(a not in ARCHES for a in arches)):
        raise _bad("danh sách kiến trúc không hợp lệ", f"invalid arches {arches!r}")
    if not isinstance(files, dict) or not files or len(files) > MAX_FILES:
        raise _bad("danh sách tệp không hợp lệ", "invalid file list")
    entries = []
    for path, meta in files.items():
        check_path(path)
        if not isinstance(meta, dict) or set(meta) != {"sha256", "size"}:
            raise _bad(f"mục không hợp lệ cho {path}", f"invalid entry for {path}")
        digest, size = meta["sha256"], meta["size"]
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise _bad(f"sha256 không hợp lệ cho {path}", f"invalid sha256 for {path}")
        if type(size) is not int or not 0 <= size <= MAX_FILE_BYTES:
            raise _bad(f"kích thước không hợp lệ cho {path}", f"invalid size for {path}")
        entries.append(FileEntry(path, digest, size))
    return Manifest(version, python, tuple(arches), tuple(sorted(entries, key=lambda e: e.path)))


def _hash_stream(read) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    while chunk := read(_CHUNK_BYTES):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def _compare(manifest: Manifest, found: dict[str, tuple[str, int]]) -> None:
    listed = {e.path: e for e in manifest.files}
    for path in sorted(set(found) - set(listed)):
        raise _bad(f"tệp thừa không có trong manifest: {path}", f"extra file not in the manifest: {path}")
    for entry in manifest.files:
        if entry.path not in found:
            raise _bad(f"thiếu tệp {entry.path}", f"missing file {entry.path}")
        digest, size = found[entry.path]
        if size != entry.size or digest != entry.sha256:
            raise _bad(f"tệp {entry.path} sai mã băm sha256 (bị sửa hoặc chép lỗi); tải lại gói",
                       f"{entry.path} does not match its sha256 (altered or badly copied); fetch the bundle again")


def describe_dir(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and size of every file under root but manifest.json; a link or special file is refused."""
    found: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise _bad(f"{rel} không phải tệp thường", f"{rel} is not a regular file")
            if rel == MANIFEST_NAME:
                continue
            check_path(rel)
            with open(full, "rb") as f:
                found[rel] = _hash_stream(f.read)
    return found


def verify_dir(root: Path) -> Manifest:
    """Check an unpacked bundle: manifest.json parses, every listed file is there with its sha256,
    and nothing else is (a stray wheel would be installed by --find-links)."""
    try:
        data = (root / MANIFEST_NAME).read_bytes()
    except OSError:
        raise _bad(f"không có {MANIFEST_NAME} trong {root}", f"no {MANIFEST_NAME} in {root}") from None
    manifest = parse_manifest(data)
    _compare(manifest, describe_dir(root))
    return manifest


def verify_tar(path: Path) -> Manifest:
    """Check a bundle .tar without unpacking it: one top directory, regular files only, manifest ok."""
    found: dict[str, tuple[str, int]] = {}
    manifest_bytes = None
    top = None
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                head, _, rel = member.name.partition("/")
                if top is None:
                    top = head
                if head != top or not _PATH_PART.match(head) or head in (".", ".."):
                    raise _bad(f"đường dẫn lạ trong tar: {member.name!r}", f"unexpected path in tar: {member.name!r}")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise _bad(f"{member.name} không phải tệp thường", f"{member.name} is not a regular file")
                f = tar.extractfile(member)
                if rel == MANIFEST_NAME:
                    manifest_bytes = f.read(MAX_MANIFEST_BYTES + 1)
                    continue
                check_path(rel)
                if rel in found:
                    raise _bad(f"tệp lặp lại: {rel}", f"duplicate file: {rel}")
                found[rel] = _hash_stream(f.read)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise _bad(f"không đọc được tệp tar ({e})", f"cannot read the tar file ({e})") from None
    if manifest_bytes is None:
        raise _bad(f"không có {MANIFEST_NAME}", f"no {MANIFEST_NAME}")
    manifest = parse_manifest(manifest_bytes)
    _compare(manifest, found)
    return manifest


def write_manifest(root: Path, version: str, python: str, arches: tuple[str, ...]) -> Manifest:
    """Describe every file under root into root/manifest.json (the bundle builder's last step)."""
    found = describe_dir(root)
    manifest = Manifest(version, python, arches,
                        tuple(FileEntry(p, d, n) for p, (d, n) in sorted(found.items())))
    (root / MANIFEST_NAME).write_bytes(manifest.to_bytes())
    return manifest


def main(argv: list[str]) -> int:
    """`python3 verify_bundle.py DIR_OR_TAR`: exit 0 and print the version, or exit 1 with the reason."""
    if len(argv) != 1:
        print("dùng / usage: python3 verify_bundle.py BUNDLE_DIR|BUNDLE.tar", file=sys.stderr)
        return 2
    target = Path(argv[0])
    try:
        manifest = verify_tar(target) if target.is_file() else verify_dir(target)
    except BundleError as e:
        print(f"meshmeet: {e}", file=sys.stderr)
        return 1
    print(f"meshmeet {manifest.version}: {len(manifest.files)} tệp đúng sha256 / files match their sha256")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
