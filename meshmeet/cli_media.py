"""`meshmeet floor grant SITE | release | allow SITE | disallow | status`: who speaks to every hall
(talks to the running node): the floor holder, and one more voice the chair allows.

This module only parses arguments and prints; it must never decide authority (the node does,
through the `floor` API) nor hold protocol logic.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable


def cmd_floor(args: argparse.Namespace) -> int:
    from .cli import api_call

    body: dict = {"action": args.action}
    if args.action in ("grant", "allow"):
        if not args.site:
            from .errors import MeshmeetError

            raise MeshmeetError(f"Cần tên điểm: meshmeet floor {args.action} TÊN_ĐIỂM",
                                f"a site is needed: meshmeet floor {args.action} SITE")
        body["site"] = args.site
    floor = api_call(args.data_dir, "floor", body if args.action != "status" else None)
    if args.json:
        print(json.dumps(floor, ensure_ascii=False))
        return 0
    holder = floor.get("holder_site") or floor.get("holder")
    if args.action == "grant":
        print(f"Đã trao quyền phát biểu cho {holder} / floor granted to {holder}")
    elif args.action == "release":
        print(f"Đã thu hồi quyền phát biểu; {holder} phát / floor released; {holder} speaks")
    elif args.action in ("allow", "disallow"):
        extra = (floor.get("voices") or {}).get("extra_site")
        print(f"Thêm giọng nói: {extra or 'không'} / extra voice: {extra or 'none'} (đang phát biểu / floor: {holder})")
    else:
        print(f"Đang phát biểu / floor: {holder} (seq {floor.get('seq')})")
    return 0


def add_commands(subparsers: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    help_text = "quyền phát biểu: điểm nào phát tới mọi hội trường / the floor: whose presenter every hall hears"
    c = subparsers.add_parser("floor", help=help_text, description=help_text)
    c.add_argument("action", choices=["grant", "release", "allow", "disallow", "status"])
    c.add_argument("site", nargs="?", default="", help="tên điểm (hoặc mã nút) / site name or node id")
    add_data_dir(c)
    c.add_argument("--json", action="store_true")
    return {"floor": cmd_floor}
