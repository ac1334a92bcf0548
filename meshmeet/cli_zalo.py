"""`meshmeet zalo setup`: store the Zalo OA's app id, app secret, OA secret key and refresh token
in DIR/zalo.toml (0600, never replicated); `meshmeet zalo status`: what the bridge is doing.

Secrets are read from standard input (one per line, in the order asked) or the terminal without
echo, never from the command line (which other users can see in `ps`). This module must never
print a secret.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Callable

from .errors import MeshmeetError
from .zalo.api import API_BASE, OAUTH_BASE
from .zalo.creds import ZaloCreds, write_creds

SECRETS = (("app_secret", "App secret"), ("oa_secret_key", "OA secret key"), ("refresh_token", "Refresh token"))


def cmd_zalo(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    if args.action == "status":
        from .cli_state import _call  # the local API with the node's token

        print(json.dumps(_call(args.data_dir, "zalo_status", None), ensure_ascii=False, indent=2))
        return 0
    if not (data_dir / "node.key").exists():
        raise MeshmeetError(f"{data_dir} chưa phải thư mục dữ liệu của meshmeet", f"{data_dir} is not a meshmeet data dir")
    values = {}
    for name, label in SECRETS:
        values[name] = (sys.stdin.readline() if args.secrets_stdin else getpass.getpass(f"{label}: ")).strip()
    path = write_creds(data_dir, ZaloCreds(app_id=args.app_id, webhook=args.webhook, api_base=args.api_base,
                                           oauth_base=args.oauth_base, poll_s=args.poll_s,
                                           retry_max_s=args.retry_max_s, **values))
    print(f"Đã lưu thông tin Zalo OA vào {path} (chỉ người chạy nút đọc được); khởi động lại nút để bật cầu nối.\n"
          f"Zalo OA credentials saved in {path} (readable by the node's user only); restart the node to start the bridge.")
    return 0


def add_commands(subparsers: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> dict:
    p = subparsers.add_parser("zalo", help="cầu nối Zalo OA / the Zalo OA bridge")
    p.add_argument("action", choices=("setup", "status"))
    add_data_dir(p)
    p.add_argument("--app-id", default="", help="the Zalo app id (setup)")
    p.add_argument("--secrets-stdin", action="store_true", help="read app secret, OA secret key, refresh token from stdin")
    p.add_argument("--webhook", action="store_true", help="this node has a public HTTPS address for Zalo's webhook")
    p.add_argument("--poll-s", type=float, default=30.0, help="seconds between polls of recent conversations")
    p.add_argument("--retry-max-s", type=float, default=900.0, help="longest wait before sending again")
    p.add_argument("--api-base", default=API_BASE, help=argparse.SUPPRESS)
    p.add_argument("--oauth-base", default=OAUTH_BASE, help=argparse.SUPPRESS)
    return {"zalo": cmd_zalo}
