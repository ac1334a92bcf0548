"""The per-data-dir node configuration: DIR/config.toml, commented, with sensible defaults.

Reads TOML with tomllib and writes it from a template (the file stays commented and readable).
This module must never touch keys, the roster or the network; a corrupt or unknown setting is a
ConfigError naming the file and the key, never a traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ConfigError

CONFIG_FILE = "config.toml"
DEFAULT_MESH_PORT = 7733
DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_MESH_PORT}"
DEFAULT_HTTP = "127.0.0.1:8080"


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str, *, what: str = "address") -> HostPort:
    """Parse "host:port" or "[v6]:port"; raise ConfigError with a readable message."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(
            f"Địa chỉ {what} không hợp lệ: {text!r} (cần dạng máy:cổng)",
            f"invalid {what} {text!r} (expected host:port)",
        )
    return HostPort(host, int(port_text))


def host_port_or_off(text: str, *, what: str) -> tuple[str, int] | None:
    """A listener address "HOST:PORT", or None for "off"."""
    if text.strip().lower() == "off":
        return None
    hp = parse_host_port(text, what=what)
    return hp.host, hp.port


LORA_MODELS = ("rak3172", "e22")
LORA_ROLES = ("", "hq", "hall", "relay")
LORA_KEYS = frozenset({"port", "model", "region", "role", "preset", "freq_hz", "power_dbm", "e22_channel", "beacon_s"})


@dataclass(frozen=True)
class LoraSettings:
    """The [lora] table: which serial modem this node drives and with which radio profile.

    `role` empty means "the roster role of this node"; `beacon_s` is the neighbour beacon period.
    """

    port: str
    model: str = "rak3172"
    region: str = "vn-920"
    role: str = ""
    preset: str = "medium"
    freq_hz: int = 921_500_000
    power_dbm: int = 14
    e22_channel: int = 71
    beacon_s: float = 300.0


# ----- [limits]: what the node grants strangers (own block; see docs/protocol/link.md) -----

LIMIT_KEYS = {  # key: (default, smallest, largest)
    "mesh_max_per_address": (16, 1, 65536),
    "mesh_max_pending": (64, 1, 65536),
    "handshakes_per_s": (2.0, 0.01, 1000.0),
    "joins_per_s": (0.5, 0.01, 1000.0),
    "web_max_connections": (128, 1, 65536),
    "web_max_per_address": (32, 1, 65536),
    "web_idle_s": (30.0, 1.0, 86400.0),
    "tls_handshake_s": (10.0, 1.0, 600.0),
}


@dataclass(frozen=True)
class LimitSettings:
    """The [limits] table: caps and timeouts on what unauthenticated peers and browsers may use."""

    mesh_max_per_address: int = 16  # mesh connections from one address
    mesh_max_pending: int = 64  # mesh connections not yet authenticated (oldest dropped for a new one)
    handshakes_per_s: float = 2.0  # link handshakes answered per address per second
    joins_per_s: float = 0.5  # join requests checked per address per second
    web_max_connections: int = 128  # per web listener (HTTP, HTTPS); ~300 kB each over TLS
    web_max_per_address: int = 32  # per web listener and address
    web_idle_s: float = 30.0  # a web connection that sends nothing (no request, no TLS hello) is closed
    tls_handshake_s: float = 10.0


def _limits(table: object, path: Path) -> LimitSettings:
    """Parse [limits]; ConfigError naming the key for anything unknown or out of range."""
    if not isinstance(table, dict):
        raise ConfigError(f"[limits] trong {path} phải là một bảng", f"[limits] in {path} must be a table")
    unknown = set(table) - set(LIMIT_KEYS)
    if unknown:
        raise ConfigError(f"Khóa lạ trong [limits] của {path}: {sorted(unknown)}",
                          f"unknown key in [limits] of {path}: {sorted(unknown)}")
    values = {}
    for key, (default, lo, hi) in LIMIT_KEYS.items():
        value = table.get(key, default)
        ok = type(value) is int if isinstance(default, int) else type(value) in (int, float)
        if not ok or not lo <= value <= hi:
            raise ConfigError(f"Giá trị [limits] {key} không hợp lệ trong {path} (cần {lo}..{hi})",
                              f"invalid [limits] {key} in {path} (expected {lo}..{hi})")
        values[key] = type(default)(value)
    return LimitSettings(**values)


# ----- end of [limits] -----


@dataclass(frozen=True)
class NodeConfig:
    """What `meshmeet run` needs besides keys and roster."""

    listen: HostPort = field(default_factory=lambda: parse_host_port(DEFAULT_LISTEN))
    http: HostPort = field(default_factory=lambda: parse_host_port(DEFAULT_HTTP))
    peers: tuple[HostPort, ...] = ()
    mdns: bool = True
    mdns_interfaces: tuple[str, ...] = ()
    keepalive_s: float = 5.0
    log_level: str = "info"
    lora: LoraSettings | None = None
    allowed_hosts: tuple[str, ...] = ()  # extra names the web app answers to (DNS-rebinding guard)
    limits: LimitSettings = field(default_factory=LimitSettings)
    https: str | None = None  # --https HOST:PORT | off: wins over DIR/webapp.toml (None: the file decides)
    residents: str | None = None  # --residents HOST:PORT | off: wins over DIR/citizens.toml `listen`

    def with_overrides(
        self,
        *,
        listen: str | None = None,
        http: str | None = None,
        peers: list[str] | None = None,
        mdns_interfaces: list[str] | None = None,
        mdns: bool | None = None,
        https: str | None = None,
        residents: str | None = None,
    ) -> "NodeConfig":
        """Command-line flags win over the file."""
        cfg = self
        for name, value in (("https", https), ("residents", residents)):
            if value:
                if value.strip().lower() != "off":
                    parse_host_port(value, what=f"--{name}")
                cfg = replace(cfg, **{name: value.strip()})
        if listen:
            cfg = replace(cfg, listen=parse_host_port(listen, what="--listen"))
        if http:
            cfg = replace(cfg, http=parse_host_port(http, what="--http"))
        if peers:
            cfg = replace(cfg, peers=cfg.peers + tuple(parse_host_port(p, what="--peer") for p in peers))
        if mdns_interfaces:
            cfg = replace(cfg, mdns_interfaces=tuple(mdns_interfaces))
        if mdns is not None:
            cfg = replace(cfg, mdns=mdns)
        return cfg


EXAMPLE = """\
# meshmeet node configuration (TOML). Every key is optional; shown values are the defaults.
# Cấu hình nút meshmeet. Mọi khóa đều tùy chọn; giá trị bên dưới là mặc định.

[network]
# Where this node accepts encrypted links from neighbour nodes (mesh port).
listen = "{listen}"
# The local web app and JSON API for the hall TV, tablets and the `meshmeet` command.
http = "{http}"
# Peers reached over 4G/WAN that mDNS cannot find, as "host:port".
peers = [{peers}]
# Find neighbours on the LAN with mDNS (zeroconf).
mdns = {mdns}
# Restrict mDNS to these local IP addresses (empty: all interfaces).
mdns_interfaces = [{mdns_interfaces}]
# Seconds between keepalives on an idle link; a link silent for 3x this is down.
keepalive_s = {keepalive_s}
# Extra host names the web app answers to (besides IP addresses, localhost, this machine's name
# and NAME.local). A browser that reaches the node by any other name is refused (DNS rebinding).
# Tên máy chủ khác mà ứng dụng web chấp nhận (ngoài địa chỉ IP, localhost, tên máy, TÊN.local).
allowed_hosts = [{allowed_hosts}]

[log]
# debug, info, warning or error
level = "{log_level}"
{lora}"""

LORA_EXAMPLE = """
# A LoRa serial modem for alerts and meeting control when no IP link is left (optional).
# Modem LoRa nối cổng nối tiếp, dùng khi mất hết kết nối IP (tùy chọn). Bỏ dấu # để bật.
# [lora]
# port = "/dev/ttyUSB0"        # or /dev/meshmeet-lora (firmware-config/udev)
# model = "rak3172"            # rak3172 or e22
# region = "vn-920"            # firmware-config/regions/vn-920.toml
# role = ""                    # hq, hall or relay; empty: this node's roster role
# preset = "medium"            # fast (SF7), medium (SF9) or long (SF11), all 250 kHz
# freq_hz = 921500000          # RAK3172 centre frequency
# power_dbm = 14               # conducted power; vn-920 allows at most 14 dBm
# e22_channel = 71             # E22 only: 850.125 + 71 = 921.125 MHz
# beacon_s = 300.0             # seconds between neighbour beacons
"""


def render(cfg: NodeConfig) -> str:
    """The config file text for `cfg`, with its comments."""
    quote = lambda items: ", ".join(f'"{i}"' for i in items)  # noqa: E731
    return EXAMPLE.format(
        listen=cfg.listen,
        http=cfg.http,
        peers=quote(str(p) for p in cfg.peers),
        mdns=str(cfg.mdns).lower(),
        mdns_interfaces=quote(cfg.mdns_interfaces),
        keepalive_s=cfg.keepalive_s,
        allowed_hosts=quote(cfg.allowed_hosts),
        log_level=cfg.log_level,
        lora=LORA_EXAMPLE if cfg.lora is None else _render_lora(cfg.lora),
    ) + _render_limits(cfg.limits)


def _render_limits(limits: LimitSettings) -> str:
    """The [limits] table: commented out while every value is the default."""
    lines = [f"{key} = {getattr(limits, key)}" for key in LIMIT_KEYS]
    if limits == LimitSettings():
        return ("\n# Caps and timeouts for strangers and browsers (optional; shown values are the defaults).\n"
                "# Giới hạn cho máy lạ và trình duyệt (tùy chọn).\n# [limits]\n" + "".join(f"# {ln}\n" for ln in lines))
    return "\n[limits]\n" + "".join(f"{ln}\n" for ln in lines)


def _render_lora(lora: LoraSettings) -> str:
    return (
        "\n# LoRa serial modem (see `meshmeet config --example` for every key).\n[lora]\n"
        f'port = "{_toml_escape(lora.port)}"\nmodel = "{lora.model}"\nregion = "{_toml_escape(lora.region)}"\n'
        f'role = "{lora.role}"\npreset = "{_toml_escape(lora.preset)}"\nfreq_hz = {lora.freq_hz}\n'
        f"power_dbm = {lora.power_dbm}\ne22_channel = {lora.e22_channel}\nbeacon_s = {float(lora.beacon_s)}\n"
    )


def _toml_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def example() -> str:
    return render(NodeConfig())


def save(data_dir: Path, cfg: NodeConfig) -> None:
    """Write DIR/config.toml atomically."""
    path = data_dir / CONFIG_FILE
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(render(cfg), encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(data_dir: Path) -> NodeConfig:
    """Read DIR/config.toml (defaults when absent); ConfigError on anything malformed."""
    path = data_dir / CONFIG_FILE
    if not path.exists():
        return NodeConfig()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"Tệp cấu hình {path} bị lỗi: {e}", f"config file {path} is malformed: {e}") from None
    net = _table(doc, "network", path)
    log = _table(doc, "log", path)
    lora_table = doc.get("lora")
    unknown = set(doc) - {"network", "log", "lora", "limits"}
    if unknown:
        raise ConfigError(f"Mục lạ trong {path}: {sorted(unknown)}", f"unknown section in {path}: {sorted(unknown)}")
    try:
        keepalive = float(net.get("keepalive_s", 5.0))
        if not 0.05 <= keepalive <= 3600:
            raise ValueError
        level = str(log.get("level", "info")).lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError
        return NodeConfig(
            listen=parse_host_port(str(net.get("listen", DEFAULT_LISTEN)), what="listen"),
            http=parse_host_port(str(net.get("http", DEFAULT_HTTP)), what="http"),
            peers=tuple(parse_host_port(str(p), what="peer") for p in _list(net, "peers", path)),
            mdns=bool(net.get("mdns", True)),
            mdns_interfaces=tuple(str(i) for i in _list(net, "mdns_interfaces", path)),
            keepalive_s=keepalive,
            log_level=level,
            allowed_hosts=tuple(_host_name(h, path) for h in _list(net, "allowed_hosts", path)),
            lora=None if lora_table is None else _lora(lora_table, path),
            limits=_limits(doc.get("limits", {}), path),
        )
    except (ValueError, TypeError):
        raise ConfigError(f"Giá trị không hợp lệ trong {path}", f"invalid value in {path}") from None


def _lora(table: object, path: Path) -> LoraSettings:
    """Parse [lora]; ConfigError naming the key for anything unknown or out of range."""
    if not isinstance(table, dict):
        raise ConfigError(f"[lora] trong {path} phải là một bảng", f"[lora] in {path} must be a table")
    unknown = set(table) - LORA_KEYS
    if unknown:
        raise ConfigError(f"Khóa lạ trong [lora] của {path}: {sorted(unknown)}",
                          f"unknown key in [lora] of {path}: {sorted(unknown)}")

    def bad(key: str) -> ConfigError:
        return ConfigError(f"Giá trị [lora] {key} không hợp lệ trong {path}", f"invalid [lora] {key} in {path}")

    port = table.get("port")
    if not isinstance(port, str) or not port.strip():
        raise bad("port")
    text = {}
    for key, default in (("model", "rak3172"), ("region", "vn-920"), ("role", ""), ("preset", "medium")):
        value = table.get(key, default)
        if not isinstance(value, str):
            raise bad(key)
        text[key] = value
    if text["model"] not in LORA_MODELS:
        raise bad("model")
    if text["role"] not in LORA_ROLES:
        raise bad("role")
    numbers = {}
    for key, default, lo, hi in (("freq_hz", 921_500_000, 100_000_000, 3_000_000_000), ("power_dbm", 14, -10, 30),
                                 ("e22_channel", 71, 0, 83)):
        value = table.get(key, default)
        if type(value) is not int or not lo <= value <= hi:
            raise bad(key)
        numbers[key] = value
    beacon = table.get("beacon_s", 300.0)
    if type(beacon) not in (int, float) or not 1.0 <= beacon <= 86_400.0:
        raise bad("beacon_s")
    return LoraSettings(port=port, beacon_s=float(beacon), **text, **numbers)


HOST_NAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                          r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")


def _host_name(value: object, path: Path) -> str:
    """One `allowed_hosts` entry: a DNS name (no port, no scheme, no wildcard)."""
    if not isinstance(value, str) or not HOST_NAME_RE.match(value):
        raise ConfigError(f"allowed_hosts trong {path}: “{value}” không phải tên máy chủ (vd. hq.local)",
                          f"allowed_hosts in {path}: “{value}” is not a host name (e.g. hq.local)")
    return value.lower().rstrip(".")


def _table(doc: dict, name: str, path: Path) -> dict:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] trong {path} phải là một bảng", f"[{name}] in {path} must be a table")
    return value


def _list(table: dict, name: str, path: Path) -> list:
    value = table.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(f"{name} trong {path} phải là danh sách", f"{name} in {path} must be a list")
    return value
