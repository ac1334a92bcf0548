"""Opening the file doc_add imports, and refusing what must never become a shared document.

doc_add copies a file from the node's disk to every hall, so the file must be one the operator
hands over: either a web upload (a name in DIR/uploads, written by the chair console's upload
route) or a path outside the node's data directory. Refused, with a bilingual reason: relative
paths, NUL characters, symbolic links (O_NOFOLLOW), anything that is not a regular file (devices,
FIFOs, sockets, directories), /proc, /sys and /dev (also when reached through a link in a parent
directory: the check is on the opened file itself), files inside the data directory, hard links
or copies of the node's small secret files (keys, PIN hash, API token), and PEM/OpenSSH private
keys. The file is opened once and checked with fstat on that descriptor, so it cannot be swapped
between the check and the read. This module must never read more than it needs to decide, never
follow a final symbolic link, and never log a file's content.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import MeshmeetError

UPLOAD_DIR = "uploads"
UPLOAD_NAME_RE = re.compile(r"^[0-9a-f]{16}\.part$")
SYSTEM_ROOTS = ("/proc", "/sys", "/dev")
SECRET_DIRS = (".", "tls", "run")  # inside the data dir: where keys, the PIN hash and the token live
SECRET_MAX_BYTES = 64 * 1024  # files this small in SECRET_DIRS are compared byte for byte
SNIFF_BYTES = 4096
PRIVATE_KEY_MARKERS = (b"PRIVATE KEY-----", b"-----BEGIN OPENSSH PRIVATE KEY")
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class SourceRefused(MeshmeetError):
    """A path doc_add will not import (the message says why, Vietnamese and English)."""


def open_upload(data_dir: Path, name: str) -> tuple[BinaryIO, int]:
    """A finished web upload DIR/uploads/NAME -> (open file, size)."""
    if not UPLOAD_NAME_RE.match(name):
        raise SourceRefused("tên tệp tải lên không hợp lệ", "invalid upload name")
    return _open_checked(str(Path(data_dir) / UPLOAD_DIR / name), data_dir, inside_ok=True)


def open_operator_file(data_dir: Path, raw_path: str) -> tuple[BinaryIO, int]:
    """A path the operator gave (the CLI) -> (open file, size); SourceRefused for anything unsafe."""
    if "\x00" in raw_path:
        raise SourceRefused("đường dẫn chứa ký tự NUL", "the path contains a NUL character")
    if not os.path.isabs(raw_path):
        raise SourceRefused("phải là đường dẫn tuyệt đối", "must be an absolute path")
    return _open_checked(raw_path, data_dir, inside_ok=False)


def _open_checked(path: str, data_dir: Path, *, inside_ok: bool) -> tuple[BinaryIO, int]:
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SourceRefused("là liên kết tượng trưng; hãy đưa đường dẫn tới chính tệp đó",
                                "is a symbolic link; give the path of the file itself") from None
        raise SourceRefused(f"không mở được tệp ({e.strerror})", f"cannot open the file ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SourceRefused("không phải tệp thường (thiết bị, ống, thư mục...)",
                            "is not a regular file (a device, pipe, socket or directory)")
    f = os.fdopen(fd, "rb")
    try:
        real = _real_path(fd, path)
        if _is_system(real, st):
            raise SourceRefused("là tệp hệ thống (/proc, /sys, /dev), không phải tài liệu",
                                "is a system file (/proc, /sys, /dev), not a document")
        data_root = os.path.realpath(data_dir)
        if not inside_ok and _under(real, data_root):
            raise SourceRefused("nằm trong thư mục dữ liệu của nút (khoá, cơ sở dữ liệu); hãy chép tài liệu ra chỗ khác",
                                "is inside the node's data directory (keys, database); copy the document elsewhere")
        if not inside_ok and _is_secret(f, st, data_root):
            raise SourceRefused("là bản sao hoặc liên kết cứng của một khoá bí mật của nút",
                                "is a copy or hard link of one of the node's secret files")
        head = f.read(SNIFF_BYTES)
        if any(marker in head for marker in PRIVATE_KEY_MARKERS):
            raise SourceRefused("trông như một khoá bí mật (private key), không gửi đi được",
                                "looks like a private key, which is never sent out")
        f.seek(0)
        return f, st.st_size
    except BaseException:
        f.close()
        raise


def _real_path(fd: int, path: str) -> str:
    """Where the opened file really is (the descriptor's own path on Linux)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _is_system(real: str, st: os.stat_result) -> bool:
    if any(_under(real, root) for root in SYSTEM_ROOTS):
        return True
    for root in SYSTEM_ROOTS:  # the same file systems mounted elsewhere
        try:
            if os.stat(root).st_dev == st.st_dev:
                return True
        except OSError:
            continue
    return False


def _is_secret(f: BinaryIO, st: os.stat_result, data_root: str) -> bool:
    """The same inode as, or the same bytes as, a small file where the node keeps its secrets."""
    paths: list[str] = []
    for sub in SECRET_DIRS:
        folder = os.path.join(data_root, sub)
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            p = os.path.join(folder, name)
            try:
                s = os.stat(p, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(s.st_mode):
                if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
                    return True
                if s.st_size == st.st_size and s.st_size <= SECRET_MAX_BYTES:
                    paths.append(p)
    if not paths:
        return False
    mine = f.read(SECRET_MAX_BYTES + 1)
    f.seek(0)
    for p in paths:
        try:
            with open(p, "rb") as other:
                if other.read(SECRET_MAX_BYTES + 1) == mine:
                    return True
        except OSError:
            continue
    return False
