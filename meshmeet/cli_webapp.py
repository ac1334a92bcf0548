"""`meshmeet chair-pin`: set or change the chair console's PIN (its scrypt hash in DIR/chair-pin);
`meshmeet device-pin`: set, change or clear the PIN a hall's tablets pair with (DIR/device-pin).

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


def _data_dir(args: argparse.Namespace) -> Path:
    data_dir = Path(args.data_dir)
    if not (data_dir / "node.key").exists():
        raise MeshmeetError(f"{data_dir} chưa phải thư mục dữ liệu của meshmeet (chạy meshmeet init trước)",
                            f"{data_dir} is not a meshmeet data dir (run meshmeet init first)")
    return data_dir


def _read_pin(args: argparse.Namespace, prompt: str) -> str:
    """The new PIN: one line of stdin with --pin-stdin, else typed twice at the terminal."""
    if args.pin_stdin:
        return sys.stdin.readline().strip()
    pin = getpass.getpass(prompt).strip()
    again = getpass.getpass("Nhập lại / again: ").strip()
    if pin != again:
        raise MeshmeetError("Hai lần nhập không khớp", "the two PINs differ")
    return pin


def cmd_chair_pin(args: argparse.Namespace) -> int:
    from .web.app import auth  # here, not at the top: the web app's import costs every CLI call a second

    data_dir = _data_dir(args)
    pin = _read_pin(args, "Mã PIN chủ toạ mới / new chair PIN: ")
    auth.write_pin(data_dir, pin)
    print(f"Đã đặt mã PIN chủ toạ ({auth.pin_path(data_dir)}); mọi phiên chủ toạ cũ đã hết hạn.\n"
          f"Chair PIN set; earlier chair sessions have ended.")
    return 0


def cmd_device_pin(args: argparse.Namespace) -> int:
    from .web.app import devices

    data_dir = _data_dir(args)
    if args.clear:
        devices.write_device_pin(data_dir, None)
        print("Đã bỏ mã PIN thiết bị: mọi máy trong mạng của điểm họp lại điểm danh, biểu quyết được như trước.\n"
              "Device PIN cleared: any computer on the site's network may check in and vote again.")
        return 0
    devices.write_device_pin(data_dir, _read_pin(args, "Mã PIN thiết bị mới / new device PIN: "))
    print("Đã đặt mã PIN thiết bị; mọi máy tính bảng phải ghép lại (mở trang máy tính bảng, nhập mã này một lần).\n"
          "Device PIN set; every tablet must pair again (open the tablet page, enter this PIN once).")
    return 0


def add_commands(subparsers: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> dict:
    p = subparsers.add_parser("chair-pin", help="đặt/đổi mã PIN chủ toạ / set or change the chair PIN",
                               description="đặt/đổi mã PIN chủ toạ (6–12 chữ số; mọi phiên chủ toạ cũ hết hạn)"
                                           " / set or change the chair PIN (6–12 digits; earlier chair sessions end)")
    add_data_dir(p)
    p.add_argument("--pin-stdin", action="store_true",
                   help="đọc mã PIN từ đầu vào chuẩn (một dòng) / read the PIN from standard input (one line)")
    d = subparsers.add_parser("device-pin", help="đặt/đổi/bỏ mã PIN ghép máy tính bảng / set, change or clear the "
                              "PIN tablets pair with", description="đặt/đổi mã PIN (6–12 chữ số) mà máy tính bảng của "
                              "điểm họp nhập một lần để được điểm danh, biểu quyết, xin phát biểu; khi có mã này, máy "
                              "khác trong Wi-Fi (người dân) không làm được các việc đó / set or change the PIN (6–12 "
                              "digits) a site's tablets enter once to check in, vote and ask to speak; with it, other "
                              "devices on the Wi-Fi (residents') cannot")
    add_data_dir(d)
    d.add_argument("--pin-stdin", action="store_true",
                   help="đọc mã PIN từ đầu vào chuẩn (một dòng) / read the PIN from standard input (one line)")
    d.add_argument("--clear", action="store_true", help="bỏ mã PIN thiết bị / clear the device PIN")
    return {"chair-pin": cmd_chair_pin, "device-pin": cmd_device_pin}
