"""`meshmeet revoke SITE`: withdraw a seat from the commune (HQ, admin key); `meshmeet roster`: list the seats.

Writes an admin-signed Revocation entry into DIR/roster.bin (datadir.revoke_seat); the running
HQ node picks it up within seconds and gossip carries it to every node, which closes its link to
the revoked node, while HQ issues a new LoRa key and a new certificate revocation list. This module
must never implement any of that itself; it only resolves SITE and asks for confirmation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

from .errors import MeshmeetError


def cmd_revoke(args: argparse.Namespace) -> int:
    from .membership.datadir import load_roster, revoke_seat
    from .membership.revocation import find_seat

    roster = load_roster(args.data_dir)
    seat = find_seat(roster, args.site)
    if seat.role == "hq" and not args.force:
        raise MeshmeetError(f"Chỗ #{seat.short_id} là trụ sở; thêm --force nếu thật sự muốn thu hồi",
                            f"seat #{seat.short_id} is an HQ seat; add --force if you really mean it")
    if roster.is_revoked(seat.short_id):
        print(f"Chỗ #{seat.short_id} ({seat.site}) đã bị thu hồi từ trước / was already revoked")
        return 0
    if not args.yes:
        answer = input(f"Thu hồi {seat.site} (#{seat.short_id})? Không thể hoàn tác. / Revoke it? This cannot be undone. [y/N] ")
        if answer.strip().lower() not in ("y", "yes", "c", "có", "co"):
            print("Đã huỷ / cancelled", file=sys.stderr)
            return 1
    rev = revoke_seat(args.data_dir, seat.short_id, time.time())
    if args.json:
        print(json.dumps({"short_id": rev.short_id, "site": seat.site, "issued_at": rev.issued_at}, ensure_ascii=False))
    else:
        print(f"Đã thu hồi {seat.site} (#{seat.short_id}). Nút trụ sở đang chạy sẽ lan truyền việc này, cấp khoá LoRa mới "
              f"và danh sách thu hồi chứng chỉ.\nRevoked {seat.site} (#{seat.short_id}); the running HQ node spreads it, "
              f"issues a new LoRa key and a certificate revocation list.")
    return 0


def cmd_roster(args: argparse.Namespace) -> int:
    from .membership.datadir import load_roster

    roster = load_roster(args.data_dir)
    now = time.time()
    members = [
        {"short_id": m.short_id, "node_id": m.node_id, "site": m.site, "role": m.role, "priority": m.priority,
         "backup": m.backup, "seat": "claimed"}
        for m in roster.members()
    ]
    seats = [
        {"short_id": s.short_id, "site": s.site, "role": s.role, "expires_at": s.expires_at,
         "seat": "open" if s.expires_at > now else "expired"}
        for s in roster.open_seats(now=None)
    ]
    if args.json:
        print(json.dumps({"commune": roster.commune_name, "members": members, "open_seats": seats}, ensure_ascii=False))
        return 0
    print(f"{roster.commune_name}: {len(members)} thành viên / members")
    for m in members:
        print(f"  #{m['short_id']:<4} {m['role']:<6} {m['node_id']}  {m['site']}")
    for s in seats:
        print(f"  #{s['short_id']:<4} {s['role']:<6} {'(chỗ trống / ' + s['seat'] + ')':<18}  {s['site']}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> dict:
    text = "thu hồi một điểm khỏi xã (HQ; không thể hoàn tác) / revoke a site from the commune (HQ; cannot be undone)"
    p = subparsers.add_parser("revoke", help="thu hồi một điểm khỏi xã / revoke a site from the commune (HQ)", description=text)
    add_data_dir(p)
    p.add_argument("site", help='tên điểm (như trong meshmeet roster) hoặc #số / site name or #seat')
    p.add_argument("--yes", action="store_true", help="không hỏi xác nhận / do not ask for confirmation")
    p.add_argument("--force", action="store_true", help="cho phép thu hồi chỗ của trụ sở / allow revoking an HQ seat")
    p.add_argument("--json", action="store_true", help="in dạng JSON / print JSON")
    text = "danh sách thành viên / list the commune members"
    r = subparsers.add_parser("roster", help=text, description=text)
    add_data_dir(r)
    r.add_argument("--json", action="store_true")
    return {"revoke": cmd_revoke, "roster": cmd_roster}
