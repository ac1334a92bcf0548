"""Doctor check: has this node been revoked? A revoked box has no links and may not start, which
looks like a network fault; the local roster (an admin-signed Revocation entry for the seat this
node's key claimed, brought by gossip) or the local commune CRL (listing this node's HTTPS
certificate) says what is really wrong, so the doctor says it first. Reads files only; it must
never write the roster, the CRL or a key, and never call a node revoked without one of the two."""

from __future__ import annotations

from pathlib import Path

from ..errors import MeshmeetError
from .findings import Finding, ok, problem, skipped

FIX_VI = ("máy này không còn được vào xã; nếu thu hồi nhầm hoặc máy được dùng lại: trụ sở tạo mã mời mới "
          "(meshmeet invite --site ...), rồi gia nhập bằng một thư mục dữ liệu mới (meshmeet join MÃ)")
FIX_EN = ("this box may not rejoin as it is; if the revocation was a mistake or the box is reused: HQ makes a new "
          "invite (meshmeet invite --site ...), then join with a fresh data dir (meshmeet join CODE)")


def _revoked_in_roster(data_dir: Path) -> tuple[int, str] | None:
    from ..membership.datadir import DataDir, load_roster
    from ..membership.identity import load_key

    d = DataDir(data_dir)
    mine = load_key(d.node_key).public_key
    roster = load_roster(data_dir)
    if roster.member_by_public_key(mine) is not None:
        return None
    for sid in roster.revoked_short_ids():
        claim, seat = roster.claim(sid), roster.seat(sid)
        if claim is not None and seat is not None and claim.node_public_key == mine:
            return sid, seat.site
    return None


def _revoked_in_crl(data_dir: Path) -> int | None:
    from ..web import crl, tls

    cert = tls.load_node_cert(data_dir)
    if cert is not None and cert.serial_number in crl.revoked_serials(data_dir):
        return cert.serial_number
    return None


def check_revoked(data_dir: Path) -> list[Finding]:
    """One finding: `problem` when the roster or the CRL here says this node was revoked."""
    if not (data_dir / "node.key").exists() or not (data_dir / "roster.bin").exists():
        return [skipped("member", "Máy này chưa gia nhập xã nào", "this node has not joined a commune")]
    try:
        seat = _revoked_in_roster(data_dir)
        serial = None if seat else _revoked_in_crl(data_dir)
    except (MeshmeetError, OSError, ValueError) as e:
        return [skipped("member", f"Không đọc được danh sách thành viên ({e})", f"cannot read the roster ({e})")]
    if seat is not None:
        return [problem("member", f"Trụ sở đã THU HỒI máy này khỏi xã (chỗ #{seat[0]}, {seat[1]}): các điểm từ chối "
                                  "liên kết của nó, nên lỗi không nằm ở mạng",
                        f"HQ has REVOKED this node from the commune (seat #{seat[0]}, {seat[1]}): members refuse its "
                        "links, so the network is not the problem", FIX_VI, FIX_EN)]
    if serial is not None:
        return [problem("member", f"Chứng chỉ HTTPS của máy này nằm trong danh sách thu hồi của xã (số {serial:x}): "
                                  "máy đã bị thu hồi, lỗi không nằm ở mạng",
                        f"this node's HTTPS certificate is on the commune's revocation list (serial {serial:x}): "
                        "it was revoked, the network is not the problem", FIX_VI, FIX_EN)]
    return [ok("member", "Máy này là thành viên của xã (chưa bị thu hồi)", "this node is a commune member (not revoked)")]
