"""`meshmeet demo`: a small commune (HQ and N halls) on this one machine, for trying meshmeet out.

Creates the commune and the halls through the real commands' code paths (init, invite, join over
TCP to the running HQ), runs every node in this process on loopback with mDNS on 127.0.0.1, prints
what runs where, and stops cleanly on Ctrl-C. It must never touch a data dir it did not create
unless the operator passed --data-dir, and never bind anything but 127.0.0.1.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

import trio

from .command_name import meshmeet_command
from .config import NodeConfig, parse_host_port
from .membership.datadir import DataDir, create_invite, init_commune, prepare_join
from .node.joining import join_commune
from .node.node import Node

LOOPBACK = "127.0.0.1"


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, preferred))
            return preferred
        except OSError:
            s.bind((LOOPBACK, 0))
            return s.getsockname()[1]


HTTPS_PORT_OFFSET = 363  # 8080 -> 8443: each demo node's HTTPS port, on loopback only


def _prepare(data_dir: Path, http_port: int) -> None:
    """Keep the demo's HTTPS listener on loopback, one port per node (the default is the LAN's 8443)."""
    https = data_dir / "webapp.toml"
    if not https.exists():
        https.write_text(f'https = "{LOOPBACK}:{_free_port(http_port + HTTPS_PORT_OFFSET)}"\n', encoding="utf-8")
    residents = data_dir / "citizens.toml"  # the residents' page listener (issue 17): loopback, one port per node
    if not residents.exists():
        residents.write_text(f'listen = "{LOOPBACK}:{_free_port(http_port + 8)}"\n', encoding="utf-8")


def _config(http_port: int) -> NodeConfig:
    return NodeConfig(
        listen=parse_host_port(f"{LOOPBACK}:0"),
        http=parse_host_port(f"{LOOPBACK}:{_free_port(http_port)}"),
        mdns=True,
        mdns_interfaces=(LOOPBACK,),
    )


def run_demo(base: Path | None, *, halls: int = 2, http_port: int = 8080) -> int:
    if base is None:
        tmp = tempfile.TemporaryDirectory(prefix="meshmeet-demo-")
        base = Path(tmp.name)
    else:
        tmp = None
        base.mkdir(parents=True, exist_ok=True)
    try:
        from .cli import _run_until_signal

        hq_dir = base / "hq"
        if not DataDir(hq_dir).roster.exists():
            init_commune(hq_dir, "Xã Triệu Sơn (demo)", "UBND xã", time.time())
        _prepare(hq_dir, http_port)
        hq = Node(hq_dir, _config(http_port))
        hall_names = [f"Thôn {i}" for i in range(1, halls + 1)]

        async def after_hq_started(nursery: trio.Nursery) -> None:
            nodes = [hq]
            for i, name in enumerate(hall_names, start=1):
                hall_dir = base / f"hall{i}"
                if not DataDir(hall_dir).roster.exists():
                    code, _ = create_invite(hq_dir, name, "hall", 3600, [f"{LOOPBACK}:{hq.mesh_port}"], time.time())
                    await join_commune(prepare_join(hall_dir, code, time.time()), mdns=False)
                _prepare(hall_dir, http_port + i)
                node = Node(hall_dir, _config(http_port + i))
                await nursery.start(node.run)
                nodes.append(node)
            _print_table(nodes, base, temporary=tmp is not None)

        async def main() -> None:
            await _run_until_signal([hq], on_started=after_hq_started)

        trio.run(main)
        print("Đã dừng / stopped.", file=sys.stderr)
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


def _print_table(nodes: list[Node], base: Path, *, temporary: bool) -> None:
    print()
    print("meshmeet demo — một xã trên máy này / a commune on this machine")
    print(f"  dữ liệu / data: {base}{' (tạm / temporary)' if temporary else ''}")
    for node in nodes:
        print(f"  {node.me.site:<10} {node.me.role:<5} {node.key.node_id}  mesh {LOOPBACK}:{node.mesh_port}  web {node.http_url}")
    hq, hall = nodes[0], nodes[-1]
    mm = meshmeet_command()
    print(f"  chủ tọa / chair:   {hq.http_url}/chair   (đặt mã PIN / set the PIN: {mm} chair-pin --data-dir {hq.data_dir})")
    print(f"  trình chiếu / presenter: {hq.http_url}/present")
    print(f"  TV hội trường / hall TV: {hall.http_url}/hall    máy tính bảng / tablet: {hall.http_url}/tablet")
    print(f"  trạng thái / status: {mm} status --data-dir {nodes[0].data_dir}")
    print(f"  hoặc / or: curl {nodes[0].http_url}/api/status")
    print("  Ctrl-C để dừng / to stop")
    print(flush=True)
