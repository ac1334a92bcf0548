"""The web listeners under idle and half-open connections, against a real `meshmeet run` process.

2,000 connections to the HTTPS port (the LAN listener) from 100 loopback addresses, 1,700 silent
and 300 that send half a TLS ClientHello, must grow the node's resident memory by less than
RSS_GROWTH_LIMIT_MB while a real client still gets its page; a connection that sends nothing, or
nothing more after a request, over HTTP or HTTPS, is closed after `web_idle_s`, and a stalled TLS
handshake after `tls_handshake_s`. Waits are hang guards.
"""

from __future__ import annotations

import resource
import socket
import ssl
import time
import urllib.request
from pathlib import Path

import pytest

from nodeproc import NodeProcess, make_commune, stop_all, wait_for

pytestmark = pytest.mark.slow

SILENT = 1700
HALF_OPEN = 300
PER_ADDRESS = 20  # over max_silent_per_address (16), under web_max_per_address (32)
RSS_GROWTH_LIMIT_MB = 50.0
BROWSER_BURST = 10  # connections a page load opens before sending (Chromium: 6 + preconnects)
IDLE_S = 2.0
RECV_GUARD_S = 40.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def raise_own_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def client_hello_prefix() -> bytes:
    """The first half of a real TLS ClientHello: enough for the server to start a handshake."""
    ctx = ssl.create_default_context()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    return hello[: len(hello) // 2]


def open_many(port: int, count: int, first_octet: int, payload: bytes = b"") -> list[socket.socket]:
    socks = []
    for i in range(count):
        s = socket.socket()
        s.bind((f"127.{first_octet}.{i // PER_ADDRESS}.1", 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    time.sleep(1.0)
    if payload:
        for s in socks:
            try:
                s.send(payload)
            except OSError:
                pass
    return socks


def https_port(node: NodeProcess) -> int:
    return int(wait_for(lambda: node.status()["webapp"]["https"], "the HTTPS listener", proc=node).rsplit(":", 1)[1])


def test_2000_idle_and_half_open_https_connections_keep_memory_bounded(tmp_path):
    raise_own_file_limit()
    hq_dir, _ = make_commune(tmp_path, 0)
    (hq_dir / "webapp.toml").write_text('https = "127.0.0.1:0"\n')
    hq = NodeProcess(hq_dir, mdns=False)
    socks: list[socket.socket] = []
    try:
        port = https_port(hq)
        ca = ssl.create_default_context(cafile=str(hq_dir / "ca.crt"))
        url = f"https://127.0.0.1:{port}/app/session"
        with urllib.request.urlopen(url, timeout=10, context=ca) as resp:  # warm up (TLS, routes)
            assert resp.status == 200
        time.sleep(1.0)
        before = rss_mb(hq.proc.pid)
        socks += open_many(port, SILENT, 10)
        socks += open_many(port, HALF_OPEN, 11, client_hello_prefix())
        time.sleep(2.0)
        during = rss_mb(hq.proc.pid)

        def served() -> bool:
            with urllib.request.urlopen(url, timeout=10, context=ca) as resp:
                return resp.status == 200

        wait_for(served, "a real client's page while the flood holds its connections", proc=hq)
        assert hq.status()["node"]["pid"] == hq.proc.pid
        growth = max(during, rss_mb(hq.proc.pid)) - before
        assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew {growth:.0f} MB ({before:.0f} -> {during:.0f})"
    finally:
        for s in socks:
            s.close()
        stop_all([hq])


def wait_closed_by_server(s: socket.socket) -> bytes:
    """Everything the server sends until it closes (b"" tail); raises on the hang guard."""
    s.settimeout(RECV_GUARD_S)
    got = b""
    while True:
        try:
            data = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return got
        if not data:
            return got
        got += data


def test_idle_http_and_https_connections_and_stalled_tls_handshakes_are_closed(tmp_path):
    hq_dir, _ = make_commune(tmp_path, 0)
    with open(hq_dir / "config.toml", "a", encoding="utf-8") as f:
        f.write(f"\n[limits]\nweb_idle_s = {IDLE_S}\ntls_handshake_s = {IDLE_S}\n")
    (hq_dir / "webapp.toml").write_text('https = "127.0.0.1:0"\n')
    hq = NodeProcess(hq_dir, mdns=False)
    conns: list[socket.socket] = []
    try:
        port = int(hq.url.rsplit(":", 1)[1])
        tls_port = https_port(hq)
        request = f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        # A browser loading a page opens up to 6 connections at once (plus preconnects) before it
        # sends on any: every one must be served (at 4 silent per address, 2 were reset).
        burst = [socket.create_connection(("127.0.0.1", port)) for _ in range(BROWSER_BURST)]
        conns += burst
        time.sleep(0.2)  # let the node accept them all while they are still silent
        for s in burst:
            s.sendall(request.encode())
        assert [wait_closed_by_server(s)[:12] for s in burst] == [b"HTTP/1.1 200"] * BROWSER_BURST
        silent = socket.create_connection(("127.0.0.1", port))
        after_request = socket.create_connection(("127.0.0.1", port))
        request = f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n\r\n"
        after_request.sendall(request.encode())
        silent_tls = socket.create_connection(("127.0.0.1", tls_port))
        stalled_tls = socket.create_connection(("127.0.0.1", tls_port))
        stalled_tls.sendall(client_hello_prefix())
        ca = ssl.create_default_context(cafile=str(hq_dir / "ca.crt"))
        idle_tls = ca.wrap_socket(socket.create_connection(("127.0.0.1", tls_port)), server_hostname="localhost")
        conns += [silent, after_request, silent_tls, stalled_tls, idle_tls]
        assert wait_closed_by_server(silent) == b""
        reply = wait_closed_by_server(after_request)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
        assert wait_closed_by_server(silent_tls) == b""
        assert not wait_closed_by_server(stalled_tls).startswith(b"HTTP")  # at most a TLS alert
        assert wait_closed_by_server(idle_tls) == b""  # after a full handshake, no request
        assert hq.status()["node"]["pid"] == hq.proc.pid
    finally:
        for s in conns:
            s.close()
        stop_all([hq])
