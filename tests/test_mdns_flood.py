"""100 fake mDNS announcements with the commune's TXT tag: a real node, real zeroconf on 127.0.0.1.

Anyone on the LAN can copy the commune tag and announce addresses. Each fake here points at a
real TCP listener of the test that counts the connections the node makes to it (and closes
them: no handshake). The node may dial at most MAX_TARGETS of them, and once the announcements
are withdrawn (mDNS goodbyes) it must stop dialling them; its configured --peer stays linked.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from meshmeet.node.discovery import SERVICE_TYPE, commune_tag
from meshmeet.node.sightings import MAX_TARGETS
from nodeproc import LOOPBACK, NodeProcess, meshmeet, stop_all, wait_for

pytestmark = pytest.mark.slow

FAKES = 100
QUIET_WINDOW_S = 10.0  # after the withdrawal has been seen: no dial to a fake in this long


class FakeListeners:
    """FAKES listening sockets on loopback; counts accepted connections per port, closes each."""

    def __init__(self, n: int) -> None:
        self.socks = []
        for _ in range(n):
            s = socket.socket()
            s.bind((LOOPBACK, 0))
            s.listen(64)
            s.settimeout(0)
            self.socks.append(s)
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.counts = {p: 0 for p in self.ports}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import selectors

        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                try:
                    conn, _ = key.fileobj.accept()
                except OSError:
                    continue
                conn.close()
                with self._lock:
                    self.counts[key.fileobj.getsockname()[1]] += 1

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for s in self.socks:
            s.close()


def test_fake_announcements_are_capped_and_forgotten_when_withdrawn(tmp_path: Path) -> None:
    hq_dir = tmp_path / "hq"
    meshmeet("init", "--data-dir", str(hq_dir), "--commune", "Xã Thử", "--site", "UBND xã")
    code = meshmeet("invite", "--data-dir", str(hq_dir), "--site", "Thôn 1", "--address", "127.0.0.1:1").stdout.strip()
    hall_dir = tmp_path / "hall"
    fakes = FakeListeners(FAKES)
    zc = Zeroconf(ip_version=IPVersion.V4Only, interfaces=[LOOPBACK])
    nodes: list[NodeProcess] = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        meshmeet("join", "--data-dir", str(hall_dir), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        hall = NodeProcess(hall_dir, "--peer", f"127.0.0.1:{hq.mesh_port}")  # mDNS on loopback
        nodes.append(hall)
        wait_for(lambda: hall.link_states().get(hq.node_id) == "up", "hall linked to its configured peer", proc=hall)
        tag = commune_tag(bytes.fromhex(hall.status()["node"]["commune_id"]))

        infos = [ServiceInfo(SERVICE_TYPE, f"{i:016x}.{SERVICE_TYPE}", addresses=[socket.inet_aton(LOOPBACK)],
                             port=port, properties={"v": "1", "c": tag, "n": f"{i:016x}"})
                 for i, port in enumerate(fakes.ports, start=0xFA0000)]
        with ThreadPoolExecutor(max_workers=FAKES) as pool:  # each registration probes for ~1.6 s
            list(pool.map(lambda info: zc.register_service(info, cooperating_responders=True), infos))

        wait_for(lambda: sum(1 for c in fakes.snapshot().values() if c) >= MAX_TARGETS // 2,
                 "the hall dials some of the fakes", proc=hall)

        def dialled() -> set[int]:
            return {p for p, c in fakes.snapshot().items() if c}

        wait_for(lambda: hall.status().get("mdns", {}).get("seen", 0) >= FAKES or len(dialled()) > MAX_TARGETS,
                 "the hall saw every fake", proc=hall)
        assert len(dialled()) <= MAX_TARGETS, f"{len(dialled())} fakes dialled"  # the rest were never kept

        zc.unregister_all_services()  # goodbye packets: the announcements are withdrawn
        wait_for(lambda: hall.status()["mdns"]["targets"] == 0, "the hall forgot every fake", proc=hall)
        before = fakes.snapshot()
        deadline = time.monotonic() + QUIET_WINDOW_S
        while time.monotonic() < deadline:  # an observation window, not a speed limit
            assert hall.proc.poll() is None
            time.sleep(0.5)
        assert fakes.snapshot() == before, "the hall still dials withdrawn announcements"
        assert hall.link_states().get(hq.node_id) == "up"  # the configured peer is unaffected
        assert hall.status()["mdns"]["over_cap"] >= FAKES - MAX_TARGETS
    finally:
        zc.close()
        stop_all(nodes)
        fakes.close()
