"""One site, one live seat: `meshmeet invite` refuses a second invitation for a site that already
has a pending invitation (an open, unexpired seat) or a member (a claimed, unrevoked seat); two
boxes claiming one site would split its check-ins and votes. The way to replace a box, or an
invitation whose code was lost, is to revoke that seat first (`meshmeet revoke "#N"`), then invite
again. Site names match after Unicode NFC, case folding and collapsed spaces ("thôn  1" is
"Thôn 1"). Pure over a Roster (time comes in as `now`); it must never write a roster or refuse a
site whose only seats are revoked or expired.
"""

from __future__ import annotations

import time
import unicodedata

from ..errors import ConfigError
from .roster import Roster


def site_key(site: str) -> str:
    """The form two site names are compared in."""
    return " ".join(unicodedata.normalize("NFC", site).casefold().split())


def refuse_second_invite(roster: Roster, site: str, now: float) -> None:
    """ConfigError when `site` already has a member or a pending invitation in `roster`."""
    key = site_key(site)
    for member in roster.members():
        if site_key(member.site) == key:
            raise ConfigError(
                f"Điểm “{member.site}” đã là thành viên của xã (chỗ #{member.short_id}, nút {member.node_id}); "
                f"không mời lần hai. Thay máy cho điểm này: thu hồi chỗ cũ trước (meshmeet revoke \"#{member.short_id}\") "
                "rồi tạo mã mời mới",
                f"site “{member.site}” is already a member (seat #{member.short_id}, node {member.node_id}); "
                f"it cannot be invited twice. To replace its box, revoke the old seat first "
                f"(meshmeet revoke \"#{member.short_id}\"), then invite again")
    for seat in roster.open_seats(now=now):
        if site_key(seat.site) == key:
            until = time.strftime("%Y-%m-%d %H:%M", time.localtime(seat.expires_at))
            raise ConfigError(
                f"Điểm “{seat.site}” đã có mã mời đang chờ (chỗ #{seat.short_id}, hết hạn {until}); dùng mã đó. "
                f"Nếu mất mã: thu hồi chỗ này (meshmeet revoke \"#{seat.short_id}\") rồi tạo mã mới",
                f"site “{seat.site}” already has a pending invite (seat #{seat.short_id}, expires {until}); use that code. "
                f"If it was lost: revoke that seat (meshmeet revoke \"#{seat.short_id}\"), then invite again")
