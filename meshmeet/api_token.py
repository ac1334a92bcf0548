"""The node's local API token: the secret that tells the `meshmeet` CLI apart from everyone else.

A running node writes a fresh random token to DIR/run/api-token (directory 0700, file 0600, owned
by the node's user) at every start; the CLI on the same machine reads it and sends it in the
TOKEN_HEADER of every API call, and the web app compares it in constant time. Being on loopback
grants nothing by itself: another local user cannot read the file, and a browser never has it.
This module must never log or print a token, never accept a token file that others may read or
that is a symbolic link, and never talk to the network.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from .errors import MeshmeetError
from .private_file import write_private

TOKEN_FILE = "api-token"
RUN_DIR = "run"
TOKEN_HEADER = "X-Meshmeet-Token"
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 128


class TokenError(MeshmeetError):
    """A token file that is missing, unsafe or unreadable."""


def token_path(data_dir: Path) -> Path:
    return Path(data_dir) / RUN_DIR / TOKEN_FILE


def create_token(data_dir: Path) -> str:
    """Write a new token to DIR/run/api-token (0600, atomically) and return it."""
    run = Path(data_dir) / RUN_DIR
    run.mkdir(mode=0o700, exist_ok=True)
    if run.is_symlink() or not run.is_dir():
        raise TokenError(f"{run} không phải thư mục", f"{run} is not a directory")
    os.chmod(run, 0o700)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    write_private(token_path(data_dir), token + "\n")
    return token


def read_token(data_dir: Path) -> str | None:
    """The running node's token, or None when there is none; TokenError when the file is unsafe
    (a symlink, not ours, readable by others) or unreadable (another user's node)."""
    path = token_path(data_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise TokenError(f"Không đọc được {path}: hãy chạy lệnh bằng người dùng chạy nút",
                         f"cannot read {path}: run the command as the user that runs the node") from None
    except OSError as e:
        raise TokenError(f"Không đọc được {path} ({e.strerror})", f"cannot read {path} ({e.strerror})") from None
    with os.fdopen(fd, "r") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077 or st.st_uid != os.geteuid():
            raise TokenError(f"Tệp {path} không an toàn (phải là tệp 0600 của người dùng chạy nút)",
                             f"{path} is unsafe (it must be a 0600 file owned by the node's user)")
        token = f.read(MAX_TOKEN_CHARS + 2).strip()
    return token or None


def token_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; False when either side is missing or oversized."""
    if not expected or not given or len(given) > MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))
