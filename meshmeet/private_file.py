"""Writing a secret file: mode 0600 from its first byte, and whole or not at all.

`write_private(path, data)` writes to a fresh temporary name beside `path` (created with O_EXCL
and O_NOFOLLOW, so never through a link someone planted there), then renames it over `path`; if
the write fails (a full disk), the temporary file goes and `path` keeps what it had. Used for keys'
neighbours: the API token, PIN hashes, the stream key, paired devices, TLS keys, Zalo credentials.
This module must never loosen a file's mode, nor follow a symbolic link.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes | str) -> None:
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
