"""A hall whose disk fills while it fetches a document: real node processes, a real small tmpfs.

The hall's data directory lives on its own 16 MiB tmpfs, a filler file leaves ~1.5 MiB free,
and HQ adds a 5 MiB document. The hall must stay up, say `disk_full` and how many bytes are
free in /api/status, answer API writes with 507 and a bilingual message; when the filler is
deleted it resumes by itself (also after a restart while the disk is full), the document completes with the right SHA-256, what it could
not store earlier is not lost (its state digest meets HQ's), and its SQLite file passes
`PRAGMA integrity_check`. Needs root (mount); skipped with the reason otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nodeproc import NodeProcess, meshmeet, stop_all, wait_for
from smalldisk import mounted_tmpfs

pytestmark = pytest.mark.slow

TMPFS_BYTES = 16 * 1024 * 1024
LEAVE_FREE_BYTES = 1536 * 1024
DOC_BYTES = 5 * 1024 * 1024
SPARE_BYTES = 64 * 1024


def api(node: NodeProcess, name: str, args: dict | None = None) -> tuple[int, dict]:
    """POST /api/NAME; (HTTP status, JSON body), errors included."""
    req = urllib.request.Request(node.url.rstrip("/") + f"/api/{name}", method="POST",
                                 data=json.dumps(args or {}).encode(),
                                 headers={"Content-Type": "application/json", **node.token_header()})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ok(node: NodeProcess, name: str, args: dict | None = None) -> dict:
    status, body = api(node, name, args)
    assert status == 200, (name, status, body)
    return body


@pytest.fixture
def small_disk(tmp_path: Path):
    with mounted_tmpfs(tmp_path, "hallfs", TMPFS_BYTES) as mnt:
        yield mnt


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_hall_whose_disk_fills_stays_up_and_resumes_by_itself(tmp_path: Path, small_disk: Path) -> None:
    hq_dir = tmp_path / "hq"
    meshmeet("init", "--data-dir", str(hq_dir), "--commune", "Xã Thử", "--site", "UBND xã")
    code = meshmeet("invite", "--data-dir", str(hq_dir), "--site", "Thôn 1", "--address", "127.0.0.1:1").stdout.strip()
    hall_dir = small_disk / "hall"
    nodes: list[NodeProcess] = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        meshmeet("join", "--data-dir", str(hall_dir), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        hall = NodeProcess(hall_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False,
                           log_path=tmp_path / "hall.log")  # the log is not on the small disk
        nodes.append(hall)
        wait_for(lambda: hall.link_states().get(hq.node_id) == "up", "hall linked to HQ", proc=hall)

        mid = ok(hq, "meeting_create", {"title": "Họp"})["id"]
        wait_for(lambda: hall.status()["sync"]["digest"] == hq.status()["sync"]["digest"], "meeting at the hall")
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (free(small_disk) - LEAVE_FREE_BYTES))
        spare = small_disk / "spare"
        spare.write_bytes(b"\0" * SPARE_BYTES)
        data = random.Random(12).randbytes(DOC_BYTES)  # incompressible, bigger than what is free
        doc_path = tmp_path / "ho-so.pdf"
        doc_path.write_bytes(data)
        doc = ok(hq, "doc_add", {"meeting_id": mid, "path": str(doc_path)})

        st = wait_for(lambda: (s := hall.status())["disk"]["state"] == "disk_full" and s, "hall says disk_full",
                      proc=hall)
        assert 0 <= st["disk"]["free_bytes"] < st["disk"]["resume_free_bytes"]
        assert ok(hall, "doc", {"id": doc["id"]})["document"]["complete"] is False
        for name, args in (("checkin", {"meeting_id": mid, "present": 7}), ("feedback", {"text": "Ý kiến"})):
            status, body = api(hall, name, args)
            assert status == 507, (name, status, body)
            err = body["error"]
            assert err["code"] == "disk_full" and "đầy" in err["vi"] and "disk is full" in err["en"]
        assert hall.proc.poll() is None  # still running: TV and tablets go on
        assert ok(hall, "meeting", {"id": mid})["meeting"]["title"] == "Họp"  # reads still answer

        # A restart with the disk still full (a service manager restarting it) comes up too.
        assert hall.stop() == 0
        spare.unlink()  # room for its run file (which tells the test its address), not for sync
        hall = NodeProcess(hall_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False, log_path=tmp_path / "hall.log")
        nodes.append(hall)
        wait_for(lambda: hall.status()["disk"]["state"] == "disk_full", "the restarted hall says disk_full", proc=hall)
        assert api(hall, "vote", {"motion_id": "m", "choice": "yes"})[0] == 507

        filler.unlink()
        wait_for(lambda: ok(hall, "doc", {"id": doc["id"]})["document"]["complete"], "document completes by itself",
                 proc=hall)
        first = ok(hall, "doc_chunk", {"id": doc["id"], "index": 0})
        got = [base64.b64decode(first["data"])]
        got += [base64.b64decode(ok(hall, "doc_chunk", {"id": doc["id"], "index": i})["data"])
                for i in range(1, first["count"])]
        assert hashlib.sha256(b"".join(got)).hexdigest() == doc["sha256"] == hashlib.sha256(data).hexdigest()

        assert ok(hall, "checkin", {"meeting_id": mid, "present": 7})["present"] == 7  # writes work again
        wait_for(lambda: hall.status()["sync"]["digest"] == hq.status()["sync"]["digest"],
                 "hall and HQ hold the same state", proc=hall)
        assert hall.stop() == 0
        with sqlite3.connect(hall_dir / "state.sqlite") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert "Traceback" not in (tmp_path / "hall.log").read_text(errors="replace")
    finally:
        stop_all(nodes)
