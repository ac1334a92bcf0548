"""`meshmeet admin backup | restore | release-share`: HQ recovery from the command line.

backup (HQ): writes HQ's secrets encrypted under a passphrase (recovery/backup_file.py) and/or
hands k-of-n Shamir shares to chosen halls through the running HQ node. restore (a new HQ
machine): from the file and passphrase, or from k halls' shares over their mesh ports.
release-share (a hall): lets its share go to the restoring machine whose code the operator read.
This module must never print a passphrase or a share, and holds no protocol logic.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable

from .errors import ConfigError, MeshmeetError

INSTALLED_UNIT = Path("/etc/systemd/system/meshmeet.service")  # install.sh's unit (meshmeet/install/)


def _passphrase(args: argparse.Namespace, twice: bool) -> str:
    if args.passphrase_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Mật khẩu sao lưu / backup passphrase: ")
    if twice and getpass.getpass("Nhập lại / again: ") != first:
        raise MeshmeetError("Hai lần nhập không khớp", "the two passphrases differ")
    return first


def _parse_shares(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*-?\s*of\s*-?\s*(\d+)\s*", text or "")
    if not m or not 2 <= int(m.group(1)) <= int(m.group(2)) <= 255:
        raise ConfigError(f"--shares phải dạng K-of-N với 2 ≤ K ≤ N, ví dụ 3-of-5 (nhận: {text!r})",
                          f"--shares must be K-of-N with 2 <= K <= N, e.g. 3-of-5 (got {text!r})")
    return int(m.group(1)), int(m.group(2))


def cmd_backup(args: argparse.Namespace) -> int:
    from .membership.datadir import load_roster
    from .recovery import backup_file, shares as sh
    from .recovery.hqsecrets import gather
    from .membership.revocation import find_seat

    if not args.out and not args.shares:
        raise ConfigError("Cần --out TỆP và/hoặc --shares K-of-N --holders ...", "give --out FILE and/or --shares K-of-N --holders ...")
    secrets = gather(args.data_dir, time.time())
    if args.out:
        out = Path(args.out)
        if out.exists():
            raise ConfigError(f"{out} đã có; chọn tên khác", f"{out} already exists; choose another name")
        if not out.parent.is_dir():  # before the passphrase: e.g. the USB stick is not mounted
            raise ConfigError(f"Không có thư mục {out.parent} (USB đã cắm và gắn chưa?)",
                              f"no directory {out.parent} (is the USB stick plugged in and mounted?)")
        data = backup_file.seal(secrets, _passphrase(args, twice=not args.passphrase_stdin))
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise ConfigError(f"Không ghi được {out}: {e.strerror}", f"cannot write {out}: {e.strerror}") from e
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        print(f"Đã ghi bản sao lưu / backup written: {out} ({len(data)} B). Cất nó ngoài trụ sở / keep it away from HQ.")
    if args.shares:
        k, n = _parse_shares(args.shares)
        names = [h.strip() for h in (args.holders or "").split(",") if h.strip()]
        if len(names) != n:
            raise ConfigError(f"--holders phải nêu đúng {n} điểm (nhận {len(names)})", f"--holders must name exactly {n} sites (got {len(names)})")
        roster = load_roster(args.data_dir)
        holders = []
        for name in names:
            member = roster.member_by_short_id(find_seat(roster, name).short_id)
            if member is None or member.role == "hq":
                raise ConfigError(f"{name} không phải một điểm thành viên (không phải trụ sở)",
                                  f"{name} is not a member hall (nor HQ itself)")
            holders.append(member)
        if len({m.node_id for m in holders}) != n:
            raise ConfigError("Các điểm giữ mảnh phải khác nhau", "share holders must be different sites")
        records = sh.make_records(secrets, k, n)
        items = [{"to": m.node_id, "sealed": sh.seal_to_node(m.public_key, r).hex()} for m, r in zip(holders, records)]
        from .cli import api_call

        api_call(args.data_dir, "recovery_deliver", {"shares": items})
        check = secrets.check().hex()
        deadline = time.monotonic() + args.wait
        acked: set[str] = set()
        while time.monotonic() < deadline:
            acks = api_call(args.data_dir, "recovery_status", {}).get("acks", {})
            acked = {m.node_id for m in holders if acks.get(m.node_id) == check}
            if len(acked) == n:
                break
            time.sleep(1.0)
        for m in holders:
            mark = "đã nhận / holds it" if m.node_id in acked else "CHƯA xác nhận / not confirmed yet"
            print(f"  {m.site:<24} {mark}")
        print(f"Mảnh {k}-of-{n} / {k}-of-{n} shares: {len(acked)}/{n} halls confirmed")
        if len(acked) < n:
            return 3
    return 0


def _via(text: str) -> tuple[str, int]:
    from .config import parse_host_port

    hp = parse_host_port(text, what="--via")
    return hp.host, hp.port


def cmd_restore(args: argparse.Namespace) -> int:
    import trio
    from nacl.public import PrivateKey

    from .recovery import backup_file
    from .recovery import shares as sh
    from .recovery.hqsecrets import install
    from .recovery.restore_client import collect

    if bool(args.from_file) == bool(args.via):
        raise ConfigError("Dùng --from TỆP hoặc --via ĐỊA_CHỈ (các điểm giữ mảnh), không cả hai",
                          "use --from FILE or --via ADDRESS (the share-holding halls), not both")
    if args.from_file:
        try:
            data = Path(args.from_file).read_bytes()
        except OSError as e:
            raise ConfigError(f"Không đọc được {args.from_file}: {e.strerror}", f"cannot read {args.from_file}: {e.strerror}") from None
        backup_file.read_header(data)
        secrets = backup_file.open_file(data, _passphrase(args, twice=False))
    else:
        one_time = PrivateKey.generate()
        code = sh.code_of(bytes(one_time.public_key))
        print(f"Mã khôi phục / restore code: {code}\n"
              f"Đọc mã này cho người vận hành mỗi điểm giữ mảnh; họ chạy: meshmeet admin release-share --code {code}\n"
              f"Read this code to each share-holding hall's operator; they run the command above.", flush=True)
        addresses = [_via(v) for v in args.via]
        secrets = trio.run(collect, addresses, one_time, bytes(16), lambda t: print(f"... {t}", file=sys.stderr, flush=True))
    roster = install(args.data_dir, secrets)
    from . import config as config_mod

    if not (Path(args.data_dir) / config_mod.CONFIG_FILE).exists():
        config_mod.save(args.data_dir, config_mod.NodeConfig())
    print(f"Đã khôi phục trụ sở / HQ restored: {roster.commune_name} ({roster.commune_id.hex()}), "
          f"{len(roster.members())} thành viên / members in the backup.\n"
          f"Tiếp theo, chạy / next, run:\n  {next_step(Path(args.data_dir), args.via)}\n"
          "Các điểm liên kết lại và gửi lại mọi dữ liệu / the halls link again and sync everything back."
          + ("" if args.via else "\n(Thêm --peer HALL:7733 cho điểm mà mDNS không thấy / "
                                 "add --peer HALL:7733 for a hall mDNS cannot see.)"))
    return 0


def next_step(data_dir: Path, via: list[str], unit_file: Path = INSTALLED_UNIT) -> str:
    """The exact command that starts the restored node: the installed service for the system data
    dir, else `meshmeet run` spelled as it runs here, with --data-dir unless it is the default and a
    --peer for each share-holding hall the restore reached."""
    import shlex

    from .command_name import meshmeet_command
    from .data_home import SYSTEM_DATA_DIR, default_data_dir

    if data_dir.absolute() == SYSTEM_DATA_DIR and unit_file.exists():
        return "sudo systemctl enable --now meshmeet"
    words = [meshmeet_command(), "run"]
    if data_dir.absolute() != default_data_dir().absolute():
        words += ["--data-dir", shlex.quote(str(data_dir))]
    for address in via:
        words += ["--peer", shlex.quote(address)]
    return " ".join(words)


def cmd_release_share(args: argparse.Namespace) -> int:
    from .cli import api_call

    status = api_call(args.data_dir, "recovery_status", {})
    if not status.get("holds_share"):
        raise MeshmeetError("Điểm này không giữ mảnh sao lưu nào của trụ sở", "this hall holds no share of HQ's backup")
    asks = status.get("asks", [])
    code = args.code
    if not code:
        if not asks:
            print("Chưa có máy nào xin mảnh / no machine has asked for the share yet")
            return 1
        for a in asks:
            print(f"  {a['code']}  asked {time.strftime('%H:%M:%S', time.localtime(a['asked_at']))}")
        code = input("Mã máy trụ sở mới đọc cho bạn / code the new HQ machine shows: ").strip()
    result = api_call(args.data_dir, "recovery_release", {"code": code})
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Đã cho phép gửi mảnh tới máy có mã {result['released']} / share released to {result['released']}")
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    fn = {"backup": cmd_backup, "restore": cmd_restore, "release-share": cmd_release_share}.get(args.admin_command or "")
    if fn is None:
        raise ConfigError("Dùng: meshmeet admin backup|restore|release-share", "use: meshmeet admin backup|restore|release-share")
    return fn(args)


def add_commands(subparsers: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> dict:
    p = subparsers.add_parser("admin", help="sao lưu/khôi phục trụ sở / HQ backup and recovery")
    sub = p.add_subparsers(dest="admin_command", metavar="ACTION")
    b = sub.add_parser("backup", help="sao lưu khóa quản trị / back up the admin key (HQ)", description="sao lưu khóa quản trị / back up the admin key (HQ)")
    add_data_dir(b)
    b.add_argument("--out", help="ghi tệp sao lưu đã mã hóa vào đây / write an encrypted backup file here")
    b.add_argument("--shares", help="chia mảnh K-of-N (Shamir), ví dụ 3-of-5 / K-of-N Shamir shares, e.g. 3-of-5")
    b.add_argument("--holders", help="tên các điểm giữ mảnh, cách nhau bằng dấu phẩy / comma-separated site names that hold the shares")
    b.add_argument("--wait", type=float, default=120.0, help="số giây chờ các điểm xác nhận / seconds to wait for the halls' confirmations")
    b.add_argument("--passphrase-stdin", action="store_true", help="đọc mật khẩu từ đầu vào chuẩn / read the passphrase from standard input")
    r = sub.add_parser("restore", help="khôi phục trụ sở trên máy mới / restore HQ on a new machine", description="khôi phục trụ sở trên máy mới / restore HQ on a new machine")
    add_data_dir(r)
    r.add_argument("--from", dest="from_file", help="tệp sao lưu / the backup file")
    r.add_argument("--via", action="append", default=[], help="địa chỉ mesh của một điểm giữ mảnh / a share-holding hall's mesh address HOST:PORT")
    r.add_argument("--passphrase-stdin", action="store_true")
    s = sub.add_parser("release-share", help="gửi mảnh cho máy trụ sở mới / release this hall's share", description="gửi mảnh cho máy trụ sở mới / release this hall's share")
    add_data_dir(s)
    s.add_argument("--code", help="mã mà máy đang khôi phục hiển thị / the code the restoring machine shows")
    s.add_argument("--json", action="store_true")
    return {"admin": cmd_admin}
