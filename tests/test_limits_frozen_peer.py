"""A hall that stops reading in the middle of a document transfer (SIGSTOP) is marked down at HQ.

Real `meshmeet run` processes on loopback with a short keepalive (KEEPALIVE_S): HQ starts sending
a big document, the hall is frozen while chunks are in flight, so HQ's writer waits on a full
socket. HQ's /api/status (which the chair's network map draws) must show the link down within
a bound derived from the keepalive, and the hall must relink once it is thawed (SIGCONT).
Waits are hang guards; the one bound asserted is DOWN_BOUND_S, ten times the dead-peer time.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from nodeproc import NodeProcess, meshmeet, start_commune, stop_all, wait_for

pytestmark = pytest.mark.slow

KEEPALIVE_S = 1.0
DEAD_AFTER_S = 3 * KEEPALIVE_S  # DEAD_AFTER_KEEPALIVES
DOWN_BOUND_S = 10 * DEAD_AFTER_S  # generous: the link must be down long before this (main: never)
DOC_BYTES = 64 * 1024 * 1024


def set_keepalive(data_dir: Path, seconds: float) -> None:
    path = data_dir / "config.toml"
    text = path.read_text(encoding="utf-8")
    assert "keepalive_s = 5.0" in text
    path.write_text(text.replace("keepalive_s = 5.0", f"keepalive_s = {seconds}"), encoding="utf-8")


def link_state(node: NodeProcess, peer: str) -> str:
    return {link["peer"]: link["state"] for link in node.status()["links"]}.get(peer, "none")


def chunks_received(node: NodeProcess) -> int:
    return int(node.status().get("sync", {}).get("chunks_received", 0))


def test_frozen_hall_mid_transfer_is_marked_down_and_relinks(tmp_path):
    nodes: list[NodeProcess] = []
    try:
        hq, (hall,) = start_commune(tmp_path, 1, nodes, prepare=lambda d: set_keepalive(d, KEEPALIVE_S))
        wait_for(lambda: link_state(hq, hall.node_id) == "up", "the hall's link at HQ")
        opened_before = {l["peer"]: l for l in hq.status()["links"]}[hall.node_id]["links_opened"]

        d = str(hq.data_dir)
        mid = meshmeet("meeting", "create", "--data-dir", d, "--title", "Họp",
                       "--starts", "2025-06-01T08:00").stdout.strip()
        doc = tmp_path / "to-trinh.pdf"
        with open(doc, "wb") as f:
            for _ in range(DOC_BYTES >> 20):
                f.write(os.urandom(1 << 20))
        meshmeet("doc", "add", mid, str(doc), "--data-dir", d)
        wait_for(lambda: chunks_received(hall) >= 4, "the document transfer to start")

        os.kill(hall.proc.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            wait_for(lambda: link_state(hq, hall.node_id) != "up", "HQ to mark the frozen hall down",
                     timeout=DOWN_BOUND_S)
            down_after_s = time.monotonic() - frozen_at
            link = {l["peer"]: l for l in hq.status()["links"]}[hall.node_id]
            assert link["state"] in ("down", "connecting")
            assert link["last_error"], "status should say why the link went down"
            assert down_after_s < DOWN_BOUND_S
            print(f"HQ marked the frozen hall down after {down_after_s:.1f} s (dead after {DEAD_AFTER_S:.0f} s)")
        finally:
            os.kill(hall.proc.pid, signal.SIGCONT)

        wait_for(lambda: link_state(hq, hall.node_id) == "up" and link_state(hall, hq.node_id) == "up",
                 "the thawed hall to relink")
        after = {l["peer"]: l for l in hq.status()["links"]}[hall.node_id]
        assert after["links_opened"] > opened_before
        all_chunks = DOC_BYTES // (256 * 1024)
        wait_for(lambda: hall.status()["sync"]["pending_chunks"] == 0 and chunks_received(hall) >= all_chunks,
                 "the document to finish at the hall", timeout=180)
    finally:
        stop_all(nodes)
