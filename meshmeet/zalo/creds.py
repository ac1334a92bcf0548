"""DIR/zalo.toml: the OA's credentials, written by `meshmeet zalo setup`, mode 0600, never replicated.

```
app_id = "..."            # the Zalo app linked to the OA
app_secret = "..."        # the app's secret key (token refresh)
oa_secret_key = "..."     # the OA's secret key (webhook signatures)
refresh_token = "..."     # the first refresh token; later ones live in DIR/zalo.sqlite
webhook = false           # true where this node has a public HTTPS address Zalo can call
api_base = "https://openapi.zalo.me"      # tests point these at an emulator
oauth_base = "https://oauth.zaloapp.com"
```
A file readable by others is refused. This module must never print a secret.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeshmeetError
from ..private_file import write_private
from .api import API_BASE, OAUTH_BASE

FILE = "zalo.toml"


@dataclass(frozen=True)
class ZaloCreds:
    app_id: str
    app_secret: str
    oa_secret_key: str
    refresh_token: str
    webhook: bool = False
    api_base: str = API_BASE
    oauth_base: str = OAUTH_BASE
    poll_s: float = 30.0
    retry_max_s: float = 900.0  # no wait is longer (the OA's quota and rate waits too)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_creds(data_dir: Path, creds: ZaloCreds) -> Path:
    for name in ("app_id", "app_secret", "oa_secret_key", "refresh_token"):
        value = getattr(creds, name)
        if not value or len(value) > 4096 or any(ord(c) < 32 for c in value):
            raise MeshmeetError(f"Thiếu hoặc sai {name}", f"missing or malformed {name}")
    path = Path(data_dir) / FILE
    text = "".join(f"{name} = {_toml_str(getattr(creds, name))}\n"
                   for name in ("app_id", "app_secret", "oa_secret_key", "refresh_token", "api_base", "oauth_base"))
    text += (f"webhook = {'true' if creds.webhook else 'false'}\npoll_s = {creds.poll_s}\n"
             f"retry_max_s = {creds.retry_max_s}\n")
    write_private(path, text)
    return path


def read_creds(data_dir: Path) -> ZaloCreds | None:
    """The credentials, None when the bridge is not set up here; MeshmeetError when unsafe or malformed."""
    path = Path(data_dir) / FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise MeshmeetError(f"Tệp {path} cho phép người khác đọc; chạy chmod 600 {path}",
                            f"{path} is readable by others; run chmod 600 {path}")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        creds = ZaloCreds(**{k: v for k, v in doc.items() if k in ZaloCreds.__dataclass_fields__})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, TypeError) as e:
        raise MeshmeetError(f"Tệp {path} bị lỗi: {e}", f"{path} is malformed: {e}") from None
    if not all(isinstance(getattr(creds, n), str) and getattr(creds, n)
               for n in ("app_id", "app_secret", "oa_secret_key", "refresh_token")):
        raise MeshmeetError(f"Tệp {path} thiếu khoá", f"{path} lacks a key")
    return creds
