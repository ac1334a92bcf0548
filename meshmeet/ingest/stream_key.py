"""The stream key an encoder must show to push to a listening ingest (DIR/ingest-key, 0600).

Made once at random and kept, so the province's encoder or OBS is set up once; the chair may set
a key of their own (`meshmeet ingest --listen PORT --key KEY`), which replaces it. The key is
local: it is never replicated, never in status, logs or the worker's command line.
This module must never print or log a key, and never read a key file others may read or write.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from ..private_file import write_private
from .push_gate import valid_key
from .source import SourceError

KEY_FILE = "ingest-key"
KEY_BYTES = 12  # 16 URL-safe characters, 96 bits


def stream_key(data_dir: Path, given: str | None = None) -> str:
    """The key to check: `given` (stored from now on) or the stored one (made on first use)."""
    path = Path(data_dir) / KEY_FILE
    if given is not None:
        if not isinstance(given, str) or not valid_key(given):
            raise SourceError("Khoá luồng phải dài 8–64 ký tự, chỉ gồm A–Z a–z 0–9 _ -",
                              "a stream key is 8-64 characters of A-Z a-z 0-9 _ -")
        _write(path, given)
        return given
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        key = secrets.token_urlsafe(KEY_BYTES)
        _write(path, key)
        return key
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        key = f.read(80).strip()
    if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077 or not valid_key(key):
        raise SourceError(f"Tệp khoá luồng {path} hỏng hoặc người khác đọc được: xoá nó để tạo khoá mới",
                          f"the stream key file {path} is damaged or readable by others: delete it to make a new key")
    return key


def _write(path: Path, key: str) -> None:
    write_private(path, key + "\n")
