"""`meshmeet run --https HOST:PORT|off --residents HOST:PORT|off`, and what the command says when
a web listener's port is taken before the node starts.

A second node on one machine needs its own ports: the mesh (`--listen`), the TV's HTTP (`--http`),
the tablets' HTTPS (`--https`, else DIR/webapp.toml, default 0.0.0.0:8443) and the residents'
page (`--residents`, else DIR/citizens.toml `listen`, default 0.0.0.0:8088). A taken HTTPS or
residents port is not fatal to the node (HTTP on localhost still works) unless the operator named
it on the command line; either way the line printed names the port and the option that changes
it. This module only checks that a port can be bound and prints; it never keeps a socket open.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from pathlib import Path

from .config import NodeConfig, host_port_or_off
from .errors import MeshmeetError


def add_listener_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--https", help="địa chỉ HTTPS cho máy tính bảng HOST:PORT hoặc off / the tablets' HTTPS address "
                                   "HOST:PORT or off (default: https in DIR/webapp.toml, else 0.0.0.0:8443)")
    c.add_argument("--residents", help="trang ý kiến người dân HOST:PORT hoặc off / the residents' page listener "
                                       "HOST:PORT or off (default: listen in DIR/citizens.toml, else 0.0.0.0:8088)")


def _taken(host: str, port: int) -> bool:
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the listeners bind
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def check_web_ports(data_dir: Path, cfg: NodeConfig) -> None:
    """Before the node starts: a taken port named with --https/--residents is an error; a taken
    default or file port is a warning line naming the port and how to change it."""
    from .citizens.settings import read_settings
    from .node.webapp_service import WEBAPP_FILE, read_https_setting

    residents = (read_settings(data_dir).listen if cfg.residents is None
                 else host_port_or_off(cfg.residents, what="--residents"))
    listeners = (("--https", "HTTPS cho máy tính bảng", "the tablets' HTTPS", read_https_setting(data_dir, cfg.https),
                  cfg.https is not None, f"https = trong {data_dir / WEBAPP_FILE}", f"https = in {data_dir / WEBAPP_FILE}"),
                 ("--residents", "trang ý kiến người dân", "the residents' page", residents, cfg.residents is not None,
                  f"listen = trong {data_dir / 'citizens.toml'}", f"listen = in {data_dir / 'citizens.toml'}"))
    for option, what_vi, what_en, address, explicit, file_vi, file_en in listeners:
        if address is None or not _taken(*address):
            continue
        host, port = address
        vi = (f"Cổng {port} ({what_vi}, {host}:{port}) đang bận (chương trình hoặc nút khác đang dùng); "
              f"đổi bằng {option} HOST:CỔNG (hoặc {file_vi}; off để tắt)")
        en = (f"port {port} ({what_en}, {host}:{port}) is in use by another program or node; "
              f"change it with {option} HOST:PORT (or {file_en}; off turns it off)")
        if explicit:
            raise MeshmeetError(vi, en)
        print(f"meshmeet: cảnh báo: {vi} / warning: {en}", file=sys.stderr, flush=True)
