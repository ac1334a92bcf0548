"""Replicated state in real `meshmeet run` processes on loopback (HQ + halls, static peers).

A meeting, its agenda and a 50 MB document made at HQ reach two halls (equal digests); a hall
stopped while both sides change converges after restart; a hall killed with SIGKILL in the
middle of a document transfer resumes it without fetching again the chunks it already had, and
its database passes PRAGMA integrity_check; a hall's HQ-only actions are refused (403, one-line
CLI error); bad API input gets 4xx. Waits are hang guards, never performance limits.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nodeproc import NodeProcess, meshmeet, start_commune, stop_all, wait_for

pytestmark = pytest.mark.slow

DOC_BYTES = 50 * 1024 * 1024
CHUNK_BYTES = 256 * 1024


def api(node: NodeProcess, name: str, args: dict | None = None) -> tuple[int, dict]:
    data = None if args is None else json.dumps(args).encode()
    req = urllib.request.Request(f"{node.url}/api/{name}", data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json", **node.token_header()})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ok(node: NodeProcess, name: str, args: dict | None = None) -> dict:
    status, body = api(node, name, args)
    assert status == 200, (name, args, status, body)
    return body


def sync(node: NodeProcess) -> dict:
    return node.status()["sync"]


def converged(nodes: list[NodeProcess]) -> bool:
    states = [sync(n) for n in nodes]
    return len({s["digest"] for s in states}) == 1 and all(s["pending_chunks"] == 0 for s in states)


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))
    return path


def test_meeting_agenda_and_document_reach_two_halls_and_authority_holds(tmp_path):
    hq, halls = start_commune(tmp_path, 2)
    nodes = [hq, *halls]
    try:
        d = str(hq.data_dir)
        mid = meshmeet("meeting", "create", "--data-dir", d, "--title", "Họp toàn xã", "--starts",
                       "2025-06-01T08:00").stdout.strip()
        item = meshmeet("agenda", "add", mid, "--data-dir", d, "--title", "Báo cáo quý II").stdout.strip()
        doc_file = random_file(tmp_path / "bao-cao.pdf", DOC_BYTES)
        doc_id = meshmeet("doc", "add", mid, str(doc_file), "--data-dir", d).stdout.strip()
        wait_for(lambda: converged(nodes), "meeting, agenda and document at both halls")

        for hall in halls:
            listed = json.loads(meshmeet("doc", "list", mid, "--json", "--data-dir", str(hall.data_dir)).stdout)
            assert [(x["id"], x["size"], x["chunks_held"], x["chunks_total"]) for x in listed] == \
                [(doc_id, DOC_BYTES, 200, 200)]
            meeting = ok(hall, "meeting", {"id": mid})
            assert meeting["meeting"]["title"] == "Họp toàn xã" and [a["id"] for a in meeting["agenda"]] == [item]
            assert meeting["documents"][0]["sha256"] == listed[0]["sha256"]
        digests = {meshmeet("state", "--digest", "--data-dir", str(n.data_dir)).stdout.strip() for n in nodes}
        assert digests == {sync(hq)["digest"]}
        # Two halls fetched 200 chunks each; shared claims mean no chunk came twice.
        assert [sync(h)["chunks_received"] for h in halls] == [200, 200]
        assert sync(hq)["chunks_served"] >= 200

        # A hall may not do what only HQ may: refused where it is made, one line, non-zero exit.
        hd = str(halls[0].data_dir)
        for argv in (["agenda", "add", mid, "--title", "Mục lạ"], ["motion", "open", mid, "--title", "Bỏ phiếu lạ"],
                     ["announce", "Thông báo lạ"]):
            refused = meshmeet(*argv, "--data-dir", hd, check=False)
            assert refused.returncode != 0, argv
            assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
            assert "may not" in refused.stderr or "only HQ" in refused.stderr
        status, body = api(halls[0], "motion_open", {"meeting_id": mid, "title": "x"})
        assert status == 403 and body["error"]["code"] == "not_authorised"
        status, body = api(halls[0], "meeting_update", {"id": mid, "status": "started"})
        assert status == 403

        # A hall's own actions flow to HQ: check-in, votes, feedback; HQ closes with turnout.
        meshmeet("checkin", mid, "--present", "30", "--data-dir", hd)
        motion = meshmeet("motion", "open", mid, "--title", "Thông qua báo cáo", "--data-dir", d).stdout.strip()
        wait_for(lambda: converged(nodes), "motion at the halls")
        meshmeet("vote", motion, "yes", "--count", "20", "--data-dir", hd)
        meshmeet("vote", motion, "no", "--count", "5", "--data-dir", hd)
        fb = meshmeet("feedback", "Đường thôn hỏng", "--data-dir", hd).stdout.strip()
        wait_for(lambda: converged(nodes), "votes and feedback at HQ")
        closed = json.loads(meshmeet("motion", "close", motion, "--json", "--data-dir", d).stdout)
        assert closed == {"motion_id": motion, "result": "passed", "yes": 20, "no": 5, "abstain": 0, "turnout": 25,
                          "present": 30, "quorum_met": True, "rule": "majority"}
        meshmeet("feedback", "reply", fb, "Xã sẽ sửa trong tháng", "--data-dir", d)
        wait_for(lambda: converged(nodes), "reply at the halls")
        replies = ok(halls[1], "feedback_list")["feedback"][0]["replies"]
        assert [r["text"] for r in replies] == ["Xã sẽ sửa trong tháng"]
        assert ok(halls[1], "meeting", {"id": mid})["motions"][0]["status"] == "closed"

        # Bad input: 4xx with the error shape, never a 500.
        bad = [("meeting", {"id": "nope"}, 404), ("meeting", {}, 400), ("agenda_add", {"meeting_id": mid}, 400),
               ("agenda_add", {"meeting_id": "nope", "title": "t"}, 404), ("checkin", {"meeting_id": mid,
               "present": "many"}, 400), ("checkin", {"meeting_id": mid, "present": -1}, 400),
               ("vote", {"motion_id": motion, "choice": "maybe"}, 400), ("vote", {"motion_id": motion,
               "choice": "yes"}, 409), ("doc_add", {"meeting_id": mid, "path": "relative.pdf"}, 400),
               ("doc_add", {"meeting_id": mid, "path": "/no/such/file"}, 400), ("state", {"format": "xml"}, 400),
               ("meeting_create", {"title": 5}, 400), ("motion_close", {"motion_id": motion}, 409)]
        for name, args, want in bad:
            status, body = api(hq, name, args)
            assert status == want, (name, args, status, body)
            assert set(body["error"]) == {"code", "vi", "en"}
    finally:
        stop_all(nodes)


def test_stopped_hall_catches_up_after_changes_on_both_sides(tmp_path):
    hq, (hall,) = start_commune(tmp_path, 1)
    nodes = [hq, hall]
    try:
        mid = ok(hq, "meeting_create", {"title": "Họp chi bộ"})["id"]
        wait_for(lambda: converged(nodes), "first meeting at the hall")
        assert hall.stop() == 0
        # While the hall is down: HQ adds agenda and a motion; the hall's own changes wait on disk.
        ok(hq, "agenda_add", {"meeting_id": mid, "title": "Mục 1"})
        ok(hq, "announce", {"text": "Họp lúc 8 giờ"})
        hall2 = NodeProcess(hall.data_dir, mdns=False)  # no peer: it runs alone for a while
        nodes.append(hall2)
        ok(hall2, "checkin", {"meeting_id": mid, "present": 12})
        ok(hall2, "feedback", {"text": "Xin lùi giờ họp", "meeting_id": mid})
        assert sync(hall2)["digest"] != sync(hq)["digest"]
        assert hall2.stop() == 0
        hall3 = NodeProcess(hall.data_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(hall3)
        wait_for(lambda: converged([hq, hall3]), "digests agree after the restart")
        at_hq = ok(hq, "meeting", {"id": mid})
        assert at_hq["attendance"]["total"] == 12 and len(at_hq["agenda"]) == 1
        assert sync(hq)["origins"] == sync(hall3)["origins"] and len(sync(hq)["origins"]) == 2
    finally:
        stop_all(nodes)


def test_kill9_mid_transfer_resumes_without_refetching(tmp_path):
    os.environ["MESHMEET_TEST_HOOKS"] = "1"  # children inherit it: enables sync_test_pace
    try:
        hq, (hall,) = start_commune(tmp_path, 1)
    finally:
        del os.environ["MESHMEET_TEST_HOOKS"]
    nodes = [hq, hall]
    try:
        ok(hq, "sync_test_pace", {"pieces_per_s": 100})  # ~20 chunks/s: a 200-chunk transfer takes ~10 s
        mid = ok(hq, "meeting_create", {"title": "Họp"})["id"]
        doc = ok(hq, "doc_add", {"meeting_id": mid, "path": str(random_file(tmp_path / "d.bin", DOC_BYTES))})
        total = doc["chunks_total"]
        wait_for(lambda: 20 <= sync(hall)["chunks_fetched"], "the transfer to be under way", proc=hall)
        hall.kill9()
        db = sqlite3.connect(hall.data_dir / "state.sqlite")
        held = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        assert 0 < held < total, held

        ok(hq, "sync_test_pace", {"pieces_per_s": None})
        hall2 = NodeProcess(hall.data_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(hall2)
        wait_for(lambda: converged([hq, hall2]), "the transfer to finish after the restart")
        s = sync(hall2)
        assert s["chunks_received"] == s["chunks_fetched"] == total - held  # nothing it had was fetched again
        assert ok(hall2, "docs", {"meeting_id": mid})["documents"][0]["chunks_held"] == total
    finally:
        stop_all(nodes)
    db = sqlite3.connect(hall.data_dir / "state.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
