"""What the operator names as the upstream conference, checked before FFmpeg sees it.

`parse_source(url=..., listen=..., protocol=..., bind=...)` gives an `IngestSource`: the URL FFmpeg
opens, its input format, its options (a `protocol_whitelist` per scheme, so an HLS playlist cannot
make FFmpeg read a local file or run another protocol; timeouts so a dead URL fails instead of
hanging), and a redacted form for logs and status (no stream key, no password). Pure: this
module must never do I/O or import PyAV; which protocols the FFmpeg build has is passed in.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import MeshmeetError

MAX_URL_CHARS = 2000
OPEN_TIMEOUT_US = 10_000_000  # FFmpeg's socket timeouts: a dead host fails within ~10 s
LISTEN_TIMEOUT_S = "2000000"  # rtsp listen: wait for the encoder ~23 days (FFmpeg turns -1 into -1000 ms for tcp and fails)
# live sources: FFmpeg probes 5 s by default and hands over that backlog afterwards; the stream
# headers (flv, RTSP SDP, MPEG-TS PAT/PMT) say what is in it well before that
LIVE_PROBE = {"analyzeduration": "500000", "probesize": "500000", "fflags": "nobuffer"}
PULL_SCHEMES = ("rtmp", "rtmps", "rtsp", "rtsps", "srt", "http", "https")
LISTEN_PROTOCOLS = ("rtmp", "rtsp")
DEFAULT_LISTEN_PORT = {"rtmp": 1935, "rtsp": 8554}
LISTEN_PATH = "/live"
# FFmpeg protocols each kind of source may use (protocol_whitelist): nothing else is opened
WHITELIST = {
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,rtmp,tls,tcp",
    "rtsp": "rtsp,rtp,udp,tcp",
    "rtsps": "rtsp,rtsps,rtp,udp,tcp,tls",
    "srt": "srt",
    "http": "http,tcp,crypto",
    "https": "https,http,tls,tcp,crypto",
}
NEEDED_PROTOCOL = {"rtmp": "rtmp", "rtmps": "rtmps", "rtsp": "tcp", "rtsps": "tls", "srt": "srt",
                   "http": "http", "https": "https"}
_HOST_RE = re.compile(r"^[A-Za-z0-9._-]{1,253}$")


class SourceError(MeshmeetError):
    """The upstream source named by the operator cannot be used (bad URL, scheme, port)."""


@dataclass(frozen=True)
class IngestSource:
    """An upstream conference, ready for FFmpeg: `url`, `format` (None: from the URL), `options`."""

    url: str
    format: str | None
    options: dict[str, str] = field(default_factory=dict)
    shown: str = ""  # for logs and status: no credentials, no stream key
    listen: bool = False

    def to_json(self) -> dict:
        return {"url": self.url, "format": self.format, "options": dict(self.options), "shown": self.shown,
                "listen": self.listen}

    @classmethod
    def from_json(cls, d: dict) -> "IngestSource":
        return cls(url=str(d["url"]), format=d.get("format"), options={str(k): str(v) for k, v in d["options"].items()},
                   shown=str(d.get("shown", "")), listen=bool(d.get("listen", False)))


def _bad(vi: str, en: str) -> SourceError:
    return SourceError(vi, en)


def parse_source(*, url: str | None = None, listen: int | None = None, protocol: str = "rtmp",
                 bind: str = "0.0.0.0", protocols: Collection[str] | None = None) -> IngestSource:
    """Check an ingest request. Exactly one of `url` (pull) or `listen` (a port to receive a push on).

    `protocols`: the FFmpeg build's input protocols (None: not checked). Raises SourceError."""
    if (url is None) == (listen is None):
        raise _bad("Cần đúng một trong hai: địa chỉ nguồn (URL) hoặc cổng nhận (--listen)",
                   "give exactly one of a source URL or a port to listen on (--listen)")
    if listen is not None:
        return _listen_source(listen, protocol, bind, protocols)
    assert url is not None
    return _pull_source(url, protocols)


def _pull_source(url: str, protocols: Collection[str] | None) -> IngestSource:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise _bad("Địa chỉ nguồn không hợp lệ (trống, quá dài hoặc có ký tự điều khiển/khoảng trắng)",
                   "the source URL is empty, too long, or has spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _bad("Địa chỉ nguồn không hợp lệ", "the source URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in PULL_SCHEMES:
        raise _bad(f"Không hỗ trợ giao thức “{scheme or '?'}”: dùng rtmp, rtmps, rtsp, srt hoặc HLS (http/https .m3u8)",
                   f"unsupported scheme “{scheme or '?'}”: use rtmp, rtmps, rtsp, srt or HLS (http/https .m3u8)")
    host = parts.hostname or ""
    if not _HOST_RE.match(host) and not _is_ip(host):
        raise _bad("Địa chỉ nguồn thiếu tên máy chủ hợp lệ", "the source URL has no valid host")
    if port == 0:
        raise _bad("Cổng 0 không hợp lệ", "port 0 is not valid")
    _check_protocol(scheme, protocols)
    opts = {"protocol_whitelist": WHITELIST[scheme]}
    fmt: str | None = None
    if scheme in ("http", "https"):
        if not parts.path.lower().endswith(".m3u8"):
            raise _bad("Qua http/https chỉ nhận danh sách HLS (.m3u8)", "over http/https only HLS playlists (.m3u8) are taken")
        fmt = "hls"
        opts.update({"rw_timeout": str(OPEN_TIMEOUT_US), "live_start_index": "-1", "http_persistent": "1"})
    elif scheme in ("rtmp", "rtmps"):
        fmt = "flv"
        opts.update({"rw_timeout": str(OPEN_TIMEOUT_US), **LIVE_PROBE})
    elif scheme in ("rtsp", "rtsps"):
        fmt = "rtsp"
        opts.update({"rtsp_transport": "tcp", "timeout": str(OPEN_TIMEOUT_US), **LIVE_PROBE})
    else:  # srt: libsrt's own timeouts, in µs
        fmt = "mpegts"
        opts.update({"connect_timeout": str(OPEN_TIMEOUT_US // 1000), "rw_timeout": str(OPEN_TIMEOUT_US), **LIVE_PROBE})
    return IngestSource(url=url, format=fmt, options=opts, shown=_redact(parts, scheme))


def _listen_source(port: object, protocol: str, bind: str, protocols: Collection[str] | None) -> IngestSource:
    if protocol not in LISTEN_PROTOCOLS:
        raise _bad("Chỉ nhận luồng đẩy tới bằng rtmp hoặc rtsp", "a pushed stream is received over rtmp or rtsp only")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _bad("Cổng nhận phải là số từ 1 đến 65535", "the listen port must be a number from 1 to 65535")
    if not _is_ip(bind):
        raise _bad("Địa chỉ nghe phải là một địa chỉ IP (ví dụ 0.0.0.0)", "the listen address must be an IP address (e.g. 0.0.0.0)")
    _check_protocol(protocol, protocols)
    host = f"[{bind}]" if ":" in bind else bind
    url = f"{protocol}://{host}:{port}{LISTEN_PATH}"
    if protocol == "rtmp":
        url += "/stream"
        opts = {"listen": "1", "protocol_whitelist": WHITELIST["rtmp"], **LIVE_PROBE}
        fmt = "flv"
    else:
        opts = {"rtsp_flags": "listen", "protocol_whitelist": WHITELIST["rtsp"], "listen_timeout": LISTEN_TIMEOUT_S,
                **LIVE_PROBE}
        fmt = "rtsp"
    return IngestSource(url=url, format=fmt, options=opts, shown=f"{protocol} listen {host}:{port}", listen=True)


def behind_gate(src: IngestSource, inner_port: int) -> IngestSource:
    """The listening source FFmpeg opens behind the stream-key gate: the same protocol and options
    on 127.0.0.1:`inner_port` (node/ingest_gate.py relays approved encoders there); `shown` stays
    the public port."""
    if not src.listen:
        raise ValueError("only a listening source goes behind the gate")
    parts = urlsplit(src.url)
    return IngestSource(url=f"{parts.scheme}://127.0.0.1:{inner_port}{parts.path}", format=src.format, options=dict(src.options),
                        shown=src.shown, listen=True)


def _check_protocol(scheme: str, protocols: Collection[str] | None) -> None:
    need = NEEDED_PROTOCOL[scheme]
    if protocols is not None and need not in protocols:
        raise _bad(f"Bản FFmpeg đi kèm PyAV trên máy này không có giao thức {scheme}: "
                   "hãy xin ban tổ chức địa chỉ RTMP hoặc HLS (https://….m3u8)",
                   f"the FFmpeg build bundled with PyAV on this machine has no {scheme} protocol: "
                   "ask the organisers for an RTMP or HLS (https://….m3u8) address")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _redact(parts, scheme: str) -> str:
    """scheme://host:port/first-path-part/… — user, password, stream key and query left out."""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    segs = [s for s in parts.path.split("/") if s]
    path = ""
    if segs:
        path = "/" + segs[0] + ("/…" if len(segs) > 1 else "")
        if scheme in ("http", "https"):
            path = "/…/" + segs[-1] if len(segs) > 1 else "/" + segs[0]
    return f"{scheme}://{host}{port}{path}"
