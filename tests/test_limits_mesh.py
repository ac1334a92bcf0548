"""Strangers at the mesh port of a real `meshmeet run` process (HQ) on loopback.

* A stranger naming a member's short id in msg1 makes HQ sign a msg2; from one address it gets at
  most `handshake_burst + handshakes_per_s x elapsed` of them (main: one per attempt).
* Join requests from one address are answered at most `join_burst + joins_per_s x elapsed` times.
* 1,100 idle connections from 70 addresses leave HQ holding a bounded number of sockets, and a
  member hall (another address) still links and HQ still answers /api/status.
Counts are asserted, never speed; waits are hang guards.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import threading
import time
from pathlib import Path

import pytest

from meshmeet.node.links import MeshLimits
from nodeproc import NodeProcess, make_commune, meshmeet, stop_all, wait_for

pytestmark = pytest.mark.slow

LIMITS = MeshLimits()
ATTEMPTS = 300
MSG2_BYTES = 98
IDLE_CONNECTIONS = 1100
IDLE_PER_ADDRESS = 16


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def msg1(commune_id: bytes, short_id: int) -> bytes:
    return b"\x01" + commune_id[:2] + short_id.to_bytes(2, "big") + os.urandom(32)


def answered(source: str, port: int, payload: bytes, want: int) -> bool:
    """One connection from `source`: send `payload`; True when at least `want` bytes come back."""
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.sendall(payload)
        got = b""
        try:
            while len(got) < want:
                data = s.recv(4096)
                if not data:
                    break
                got += data
        except (ConnectionResetError, socket.timeout):
            pass
        return len(got) >= want


def flood(source: str, port: int, payload: bytes, want: int, attempts: int) -> tuple[int, float]:
    """(answered attempts, seconds the flood took)."""
    start = time.monotonic()
    count = sum(answered(source, port, payload, want) for _ in range(attempts))
    return count, time.monotonic() - start


def join_request() -> bytes:
    """A well-framed join request whose seat is junk: the member must decode and check it."""
    import msgpack

    body = msgpack.packb([1, 1, os.urandom(200), os.urandom(200), os.urandom(16)], use_bin_type=True)
    return b"J" + len(body).to_bytes(4, "big") + body


def hall_short_id(hall_dir: Path) -> int:
    roster = json.loads(meshmeet("roster", "--data-dir", str(hall_dir), "--json").stdout)
    return next(m["short_id"] for m in roster["members"] if m["role"] == "hall")


def test_strangers_cannot_make_hq_sign_or_check_at_will_and_members_still_link(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    hq_dir, [(hall_dir, code)] = make_commune(tmp_path, 1)
    hq = NodeProcess(hq_dir, mdns=False)
    nodes = [hq]
    idle: list[socket.socket] = []
    try:
        meshmeet("join", "--data-dir", str(hall_dir), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        commune_id = bytes.fromhex(hq.status()["node"]["commune_id"])
        victim = hall_short_id(hall_dir)

        # 1. Handshake replies (each one an Ed25519 signature) to a stranger from one address.
        signed, elapsed = flood("127.0.0.2", hq.mesh_port, msg1(commune_id, victim), MSG2_BYTES, ATTEMPTS)
        bound = LIMITS.handshake_burst + LIMITS.handshakes_per_s * elapsed + 1
        assert signed <= bound, f"{signed} signed replies in {elapsed:.1f} s (bound {bound:.0f})"
        assert signed >= 1  # the first ones are answered: the limit is a rate, not a ban

        # 2. Join requests from one address.
        replies, elapsed = flood("127.0.0.3", hq.mesh_port, join_request(), 1, 60)
        bound = LIMITS.join_burst + LIMITS.joins_per_s * elapsed + 1
        assert 1 <= replies <= bound, f"{replies} join answers in {elapsed:.1f} s (bound {bound:.0f})"

        # 3. 1,100 idle connections, then a member hall links from 127.0.0.1 while a stranger keeps
        #    handshaking from 127.0.0.4.
        for i in range(IDLE_CONNECTIONS):
            s = socket.socket()
            s.bind((f"127.0.{10 + i // IDLE_PER_ADDRESS}.1", 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", hq.mesh_port))
            idle.append(s)
        time.sleep(2.0)
        held = open_fds(hq.proc.pid)
        stop = threading.Event()
        stranger = threading.Thread(
            target=lambda: [answered("127.0.0.4", hq.mesh_port, msg1(commune_id, victim), MSG2_BYTES)
                            for _ in iter(lambda: stop.is_set(), True)],
            daemon=True,
        )
        stranger.start()
        try:
            hall = NodeProcess(hall_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
            nodes.append(hall)
            wait_for(lambda: hq.link_states().get(hall.node_id) == "up", "the member hall to link during the flood")
        finally:
            stop.set()
            stranger.join(timeout=30)
        admission = hq.status()["admission"]
        # HQ holds at most max_pending idle strangers (plus its own files), never one socket per attempt.
        assert held < LIMITS.max_pending + 150, f"HQ holds {held} open files with {IDLE_CONNECTIONS} idle connections"
        assert admission["refused_handshakes"] >= 1 and admission["dropped_pending"] >= 1, admission
    finally:
        for s in idle:
            s.close()
        stop_all(nodes)
