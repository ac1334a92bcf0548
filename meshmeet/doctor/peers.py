"""Doctor checks read from the running node's status: links, mDNS sightings, clock offset against
each peer (meshmeet/node/clock_service.py), version skew (status "peer_versions" where the node
reports it). Pure functions of the status dict; they never call the node themselves."""

from __future__ import annotations

from .findings import Finding, ok, problem, skipped

CLOCK_MAX_OFFSET_MS = 5_000  # beyond this invites, certificates, votes and the agenda times go wrong


def check_links(status: dict) -> list[Finding]:
    up = [link for link in status.get("links", []) if link.get("state") == "up"]
    if not up:
        return [problem("links", "Nút chưa nối với nút nào trong xã", "the node has no link to any other node",
                        "kiểm tra mạng LAN/4G; thêm --peer ĐỊA_CHỈ_TRỤ_SỞ:7733 hoặc [network] peers trong config.toml",
                        "check the LAN/4G; add --peer HQ_ADDRESS:7733 or [network] peers in config.toml")]
    sites = ", ".join(sorted(link.get("site") or link.get("peer", "?") for link in up))
    return [ok("links", f"{len(up)} liên kết: {sites}", f"{len(up)} link(s) up: {sites}")]


def check_mdns(status: dict, mdns_enabled: bool) -> list[Finding]:
    if not mdns_enabled:
        return [skipped("mdns", "mDNS đã tắt (--no-mdns)", "mDNS is off (--no-mdns)")]
    mdns = status.get("mdns")
    if not isinstance(mdns, dict):
        return [skipped("mdns", "Nút không báo mDNS", "the node reports no mDNS state")]
    if not mdns.get("seen"):
        return [problem("mdns", "Chưa thấy nút nào của xã qua mDNS trên mạng LAN",
                        "no node of this commune seen over mDNS on the LAN",
                        "bình thường nếu hội trường chỉ nối 4G; nếu cùng mạng LAN: mở UDP 5353 (multicast) trên tường lửa "
                        "và router, hoặc dùng --peer",
                        "normal if the hall is on 4G only; on a shared LAN: allow UDP 5353 (multicast) in the firewall "
                        "and router, or use --peer")]
    return [ok("mdns", f"mDNS đã thấy {mdns['seen']} lần", f"mDNS sightings: {mdns['seen']}")]


def check_clock(status: dict) -> list[Finding]:
    samples = {peer: s for peer, s in (status.get("clock") or {}).items()
               if isinstance(s, dict) and isinstance(s.get("offset_ms"), (int, float))}
    if not samples:
        return [skipped("clock", "Chưa so được đồng hồ với nút nào (cần một liên kết)",
                        "no clock comparison yet (needs a link)")]
    sites = {link.get("peer"): link.get("site") or link.get("peer") for link in status.get("links", [])}
    off = {peer: s for peer, s in samples.items()
           if abs(s["offset_ms"]) - (s.get("rtt_ms") or 0) / 2 > CLOCK_MAX_OFFSET_MS}
    if not off:
        worst = max(abs(s["offset_ms"]) for s in samples.values())
        return [ok("clock", f"Đồng hồ khớp với {len(samples)} nút (lệch tối đa {worst / 1000:.1f} s)",
                   f"clock agrees with {len(samples)} peer(s) (at most {worst / 1000:.1f} s apart)")]
    same_way = all(s["offset_ms"] > 0 for s in off.values()) or all(s["offset_ms"] < 0 for s in off.values())
    ours_wrong = len(samples) >= 2 and len(off) == len(samples) and same_way
    out = []
    for peer, s in sorted(off.items()):
        secs = s["offset_ms"] / 1000
        site = sites.get(peer, peer)
        if ours_wrong:
            who_vi, who_en = "máy này (mọi nút khác đều lệch cùng chiều)", "this machine (every peer is off the same way)"
        elif len(samples) == 1:
            who_vi, who_en = f"máy nào sai giờ: máy này hoặc {site}", f"whichever is wrong: this machine or {site}"
        else:
            who_vi, who_en = f"máy {site}", f"the machine at {site}"
        out.append(problem("clock", f"Đồng hồ của {sites.get(peer, peer)} lệch {secs:+.1f} s so với máy này",
                           f"{sites.get(peer, peer)}'s clock is {secs:+.1f} s off ours",
                           f"chỉnh giờ ở {who_vi}: sudo timedatectl set-ntp true (có mạng) hoặc sudo date -s 'YYYY-MM-DD HH:MM:SS'",
                           f"set the time on {who_en}: sudo timedatectl set-ntp true (with internet) or sudo date -s 'YYYY-MM-DD HH:MM:SS'"))
    return out


def _minor(version: str) -> tuple[int, int] | None:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def check_versions(status: dict, mine: str) -> list[Finding]:
    """Adjacent versions work together (rolling upgrades); two minor versions apart or more is a problem."""
    peers = status.get("peer_versions")
    if not isinstance(peers, dict) or not peers:
        return [skipped("versions", "Các nút chưa báo phiên bản", "peers do not report their versions")]
    sites = {link.get("peer"): link.get("site") or link.get("peer") for link in status.get("links", [])}
    theirs = {peer: str(v.get("software", "?")) for peer, v in peers.items() if isinstance(v, dict)}
    me = _minor(mine)
    far = {}
    for peer, version in theirs.items():
        other = _minor(version)
        if me is None or other is None or other[0] != me[0] or abs(other[1] - me[1]) > 1:
            far[peer] = version
    if far:
        names = ", ".join(f"{sites.get(p, p)} {v}" for p, v in sorted(far.items()))
        return [problem("versions", f"Phiên bản quá khác nhau: máy này {mine}, {names}",
                        f"versions too far apart: this node {mine}, {names}",
                        "cập nhật các nút cũ (meshmeet release, hoặc cài gói mới: sudo ./install.sh)",
                        "update the older nodes (meshmeet release, or install the new bundle: sudo ./install.sh)")]
    mixed = sorted(set(theirs.values()) | {mine})
    if len(mixed) > 1:
        return [ok("versions", f"Nhiều phiên bản cùng chạy ({', '.join(mixed)}): vẫn làm việc được, nên cập nhật",
                   f"mixed versions ({', '.join(mixed)}): they work together; update the older ones")]
    return [ok("versions", f"Mọi nút đã nối chạy {mine}", f"every linked node runs {mine}")]
