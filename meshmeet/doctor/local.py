"""Doctor checks of this machine: key file permissions, free disk, the node's ports, the LoRa modem
profile against the region file. Each returns Findings; none changes a file, a port or a modem."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
from pathlib import Path

from ..config import NodeConfig
from .findings import Finding, ok, problem, skipped

MIN_FREE_BYTES = 512 * 1024 * 1024  # a meeting's documents and recordings need room; below this, warn
SECRET_NAMES = ("node.key", "admin.key", "ca.key", "lora.key", "run/api-token", "chair-pin", "device-pin",
                "devices.json", "ingest-key")
SECRET_SUFFIXES = (".key",)


def _secret_files(data_dir: Path) -> list[Path]:
    found = {data_dir / name for name in SECRET_NAMES if (data_dir / name).exists()}
    for dirpath, _dirs, files in os.walk(data_dir):
        for name in files:
            if name.endswith(SECRET_SUFFIXES):
                found.add(Path(dirpath) / name)
    return sorted(found)


def check_keys(data_dir: Path) -> list[Finding]:
    """Secret files (keys, the API token) 0600 and owned by the node's user (the data dir's owner,
    whoever runs the doctor); the data dir closed to others."""
    if not data_dir.is_dir():
        return [problem("keys", f"Không có thư mục dữ liệu {data_dir}", f"no data dir {data_dir}",
                        "chạy meshmeet init (trụ sở) hoặc meshmeet join MÃ (hội trường)",
                        "run meshmeet init (HQ) or meshmeet join CODE (hall)")]
    out: list[Finding] = []
    st = data_dir.stat()
    owner = st.st_uid
    if stat.S_IMODE(st.st_mode) & 0o077:
        out.append(problem("keys", f"Người khác vào được thư mục {data_dir} (quyền {stat.S_IMODE(st.st_mode):o})",
                           f"others can enter {data_dir} (mode {stat.S_IMODE(st.st_mode):o})",
                           f"chmod 700 {data_dir}", f"chmod 700 {data_dir}"))
    for path in _secret_files(data_dir):
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            out.append(problem("keys", f"{path} là liên kết, không phải tệp", f"{path} is a link, not a file",
                               f"thay bằng tệp thật: cp --remove-destination \"$(readlink -f {path})\" {path}",
                               f"replace it with the real file: cp --remove-destination \"$(readlink -f {path})\" {path}"))
        elif mode & 0o077:
            out.append(problem("keys", f"Tệp bí mật {path} người khác đọc được (quyền {mode:o})",
                               f"secret file {path} is readable by others (mode {mode:o})",
                               f"chmod 600 {path}", f"chmod 600 {path}"))
        elif st.st_uid != owner:
            out.append(problem("keys", f"Tệp {path} thuộc người dùng khác (uid {st.st_uid})",
                               f"{path} belongs to another user (uid {st.st_uid})",
                               f"sudo chown meshmeet: {path} (người dùng của nút)",
                               f"sudo chown meshmeet: {path} (the node's user)"))
    return out or [ok("keys", "Tệp khóa chỉ người dùng của nút đọc được", "key files are private to the node's user")]


def check_disk(data_dir: Path, min_free_bytes: int = MIN_FREE_BYTES) -> list[Finding]:
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError as e:
        return [skipped("disk", f"Không đo được dung lượng trống ({e.strerror})", f"cannot measure free space ({e.strerror})")]
    mib = free / (1 << 20)
    if free < min_free_bytes:
        return [problem("disk", f"Đĩa gần đầy: còn {mib:.0f} MiB ở {data_dir}", f"disk nearly full: {mib:.0f} MiB free at {data_dir}",
                        f"xóa bớt tệp không cần (cần ít nhất {min_free_bytes >> 20} MiB): du -sh {data_dir}/*",
                        f"free some space (at least {min_free_bytes >> 20} MiB needed): du -sh {data_dir}/*")]
    return [ok("disk", f"Còn {mib:.0f} MiB trống", f"{mib:.0f} MiB free")]


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((_probe_host(host), port), timeout=3):
            return True
    except OSError:
        return False


def _bind_error(host: str, port: int) -> int | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno
    return None


def check_ports(cfg: NodeConfig, running: dict | None) -> list[Finding]:
    """Running node: its mesh and web ports answer. Stopped node: the configured ports are free to bind."""
    wanted = [("mesh", cfg.listen.host, cfg.listen.port), ("web", cfg.http.host, cfg.http.port)]
    out: list[Finding] = []
    if running:
        wanted = [("mesh", cfg.listen.host, int(running.get("mesh_port") or cfg.listen.port)), ("web", cfg.http.host,
                  int(str(running.get("http", "")).rsplit(":", 1)[-1] or cfg.http.port))]
        for name, host, port in wanted:
            if not _listening(host, port):
                out.append(problem("ports", f"Cổng {name} {port} không trả lời dù nút đang chạy",
                                   f"{name} port {port} does not answer although the node runs",
                                   "khởi động lại nút: sudo systemctl restart meshmeet; xem journalctl -u meshmeet",
                                   "restart the node: sudo systemctl restart meshmeet; see journalctl -u meshmeet"))
        return out or [ok("ports", f"Cổng mesh {wanted[0][2]} và web {wanted[1][2]} đang nghe",
                          f"mesh port {wanted[0][2]} and web port {wanted[1][2]} are listening")]
    for name, host, port in wanted:
        err = _bind_error(host, port)
        if err == errno.EADDRINUSE:
            out.append(problem("ports", f"Cổng {name} {host}:{port} đang bị chương trình khác dùng",
                               f"{name} port {host}:{port} is used by another program",
                               f"tìm chương trình đó: sudo ss -ltnp 'sport = :{port}'; hoặc đổi cổng trong config.toml",
                               f"find it: sudo ss -ltnp 'sport = :{port}'; or change the port in config.toml"))
        elif err is not None:
            out.append(problem("ports", f"Không mở được cổng {name} {host}:{port} ({os.strerror(err)})",
                               f"cannot open {name} port {host}:{port} ({os.strerror(err)})",
                               "kiểm tra địa chỉ listen/http trong config.toml", "check listen/http in config.toml"))
    return out or [ok("ports", "Các cổng của nút đang trống, sẵn sàng", "the node's ports are free to use")]


def check_lora(cfg: NodeConfig, role: str, config_dir: Path | None = None) -> list[Finding]:
    """The [lora] settings against the region file (frequency, bandwidth, power, preset, modem model)."""
    from ..errors import MeshmeetError
    from ..lora import region as region_mod

    lora = cfg.lora
    if lora is None:
        return [skipped("lora", "Không cấu hình modem LoRa", "no LoRa modem configured")]
    config_dir = config_dir or region_mod.DEFAULT_CONFIG_DIR
    fix_vi, fix_en = "sửa [lora] trong config.toml (xem meshmeet config --example)", "fix [lora] in config.toml (see meshmeet config --example)"
    try:
        region = region_mod.load_region(lora.region, config_dir)
        profile = region_mod.load_modem_profile(lora.model, config_dir)
    except MeshmeetError as e:
        return [problem("lora", e.vi, e.en, fix_vi, fix_en)]
    role = lora.role or role
    if lora.model == "e22":
        from ..lora.e22proto import E22Settings

        wanted = E22Settings(channel=lora.e22_channel, power_dbm=int(profile["defaults"]["power_dbm"]))
        freq_hz, bw_khz, power = int(wanted.freq_mhz * 1e6), 125, wanted.power_dbm
    else:
        params = region.presets.get(lora.preset)
        if params is None:
            return [problem("lora", f"Vùng {region.name} không có cấu hình '{lora.preset}'",
                            f"region {region.name} has no preset '{lora.preset}'", fix_vi, fix_en)]
        freq_hz, bw_khz, power = lora.freq_hz, params.bw_hz // 1000, lora.power_dbm
    found = region_mod.check_radio(region, role, freq_hz, bw_khz, power)
    if found:
        return [problem("lora", p.vi, p.en, fix_vi, fix_en) for p in found]
    return [ok("lora", f"Cấu hình LoRa hợp lệ ở vùng {region.name} ({freq_hz / 1e6:.3f} MHz, {power} dBm)",
               f"LoRa settings are legal in region {region.name} ({freq_hz / 1e6:.3f} MHz, {power} dBm)")]


def check_devices(data_dir: Path, status: dict | None) -> list[Finding]:
    """A site whose residents' page listens for phones on its network should make its tablets pair
    (a device PIN): otherwise any phone on that Wi-Fi may check in and vote for the hall."""
    residents_port = ((status or {}).get("citizens") or {}).get("residents_port")
    if status is None or not residents_port:
        return [skipped("devices", "Trang người dân không mở (hoặc nút không chạy): không kiểm tra việc ghép máy",
                        "the residents' page is not open (or the node is not running): device pairing not checked")]
    if (data_dir / "device-pin").exists():
        return [ok("devices", "Máy tính bảng phải ghép (đã đặt mã PIN thiết bị)", "tablets must pair (a device PIN is set)")]
    return [problem("devices", f"Trang người dân mở ở cổng {residents_port} nhưng chưa đặt mã PIN thiết bị: điện thoại "
                    "nào trong Wi-Fi của điểm họp cũng điểm danh, biểu quyết được thay hội trường",
                    f"the residents' page is open on port {residents_port} but no device PIN is set: any phone on "
                    "the site's Wi-Fi may check in and vote for the hall",
                    f"meshmeet device-pin --data-dir {data_dir}, rồi ghép từng máy tính bảng (nhập mã trên trang máy tính bảng)",
                    f"meshmeet device-pin --data-dir {data_dir}, then pair each tablet (enter the PIN on its tablet page)")]
