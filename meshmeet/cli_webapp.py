"""`meshmeet chair-pin`: set or change the chair console's PIN (its scrypt hash in DIR/chair-pin).

Reads the PIN twice from the terminal (or once from --pin-stdin for scripts). This module must
never print or log the PIN, and never talk to the running node (the web app rereads the file and
ends every chair session when it changes).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Callable

from .errors import MeshmeetError


def cmd_chair_pin(args: argparse.Namespace) -> int:
    from .web.app import auth  # here, not at the top: the web app's import costs every CLI call a second

    data_dir = Path(args.data_dir)
    if not (data_dir / "node.key").exists():
        raise MeshmeetError(f"{data_dir} chưa phải thư mục dữ liệu của meshmeet (chạy meshmeet init trước)",
                            f"{data_dir} is not a meshmeet data dir (run meshmeet init first)")
    if args.pin_stdin:
        pin = sys.stdin.readline().strip()
    else:
        pin = getpass.getpass("Mã PIN chủ toạ mới / new chair PIN: ").strip()
        again = getpass.getpass("Nhập lại / again: ").strip()
        if pin != again:
            raise MeshmeetError("Hai lần nhập không khớp", "the two PINs differ")
    auth.write_pin(data_dir, pin)
    print(f"Đã đặt mã PIN chủ toạ ({auth.pin_path(data_dir)}); mọi phiên chủ toạ cũ đã hết hạn.\n"
          f"Chair PIN set; earlier chair sessions have ended.")
    return 0


def add_commands(subparsers: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> dict:
    p = subparsers.add_parser("chair-pin", help="đặt/đổi mã PIN chủ toạ / set or change the chair PIN",
                               description="đặt/đổi mã PIN chủ toạ (6–12 chữ số; mọi phiên chủ toạ cũ hết hạn)"
                                           " / set or change the chair PIN (6–12 digits; earlier chair sessions end)")
    add_data_dir(p)
    p.add_argument("--pin-stdin", action="store_true",
                   help="đọc mã PIN từ đầu vào chuẩn (một dòng) / read the PIN from standard input (one line)")
    return {"chair-pin": cmd_chair_pin}
