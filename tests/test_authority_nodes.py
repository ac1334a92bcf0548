"""Authority at merge in real `meshmeet run` processes on loopback (HQ + two halls, static peers).

Issue 12, finding 1: a protocol-aware attacker holding a hall's identity key writes signed
changes straight into that hall's store (bypassing the hall's own API and local checks): it
renames HQ's meeting and sets it `ended`, casts a ballot of 1,000,000 on a motion HQ already
closed, and a plausible late ballot of 5. The hall's node then syncs over its real link. HQ,
and the other hall behind HQ, refuse the rename/status and the million (counted as rejected
changes), keep the late ballot visible but uncounted, and agree. Waits are hang guards.
"""

from __future__ import annotations

import time

import pytest

from meshmeet.membership.identity import load_key
from meshmeet.meeting.replica import open_store
from nodeproc import NodeProcess, start_commune, stop_all, wait_for
from test_node_sync import ok, sync

pytestmark = pytest.mark.slow

STATE_FILE = "state.sqlite"  # meshmeet/node/sync_service.py


def test_hall_key_cannot_rename_end_hq_meeting_or_stuff_a_closed_motion(tmp_path):
    hq, halls = start_commune(tmp_path, 2)
    nodes = [hq, *halls]
    try:
        mid = ok(hq, "meeting_create", {"title": "Họp toàn xã"})["id"]
        motion = ok(hq, "motion_open", {"meeting_id": mid, "title": "Làm đường bê tông"})["id"]
        wait_for(lambda: all(ok(h, "meeting", {"id": mid})["motions"] for h in halls), "the motion at both halls")
        ok(halls[0], "checkin", {"meeting_id": mid, "present": 30})
        ok(halls[0], "vote", {"motion_id": motion, "choice": "yes", "count": 20})
        wait_for(lambda: ok(hq, "meeting", {"id": mid})["motions"][0]["tally"]["yes"] == 20, "the ballot at HQ")
        closed = ok(hq, "motion_close", {"motion_id": motion})
        assert (closed["yes"], closed["turnout"], closed["present"], closed["result"]) == (20, 20, 30, "passed")
        wait_for(lambda: len({sync(n)["digest"] for n in nodes}) == 1, "the close everywhere")

        # The attacker: hall 1's key and its own store, running modified code with no local checks.
        hall_dir = halls[0].data_dir
        halls[0].stop()
        key = load_key(hall_dir / "node.key")
        forged = open_store(hall_dir / STATE_FILE, key, lambda node_id: "hq")
        forged.rules.check = lambda *change: None  # type: ignore[method-assign]
        forged.write("meetings", mid, {"title": "Cuộc họp đã hủy", "status": "ended"})
        forged.write("ballots", (motion, key.node_id, "#no"), {"choice": "no", "count": 1_000_000, "at": time.time()})
        forged.write("ballots", (motion, key.node_id, "#abstain"), {"choice": "abstain", "count": 5, "at": time.time()})
        last = forged.version_vector()[key.node_id]
        forged.close()
        halls[0] = nodes[1] = NodeProcess(hall_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)

        honest = [hq, halls[1]]
        # >= : the restarted hall also writes its own node_versions row (its version) after the forgeries
        wait_for(lambda: all((sync(n)["origins"].get(key.node_id) or 0) >= last for n in honest),
                 "the forged batches at HQ and at hall 2 (relayed by HQ)")
        for node in honest:
            meeting = ok(node, "meeting", {"id": mid})
            assert (meeting["meeting"]["title"], meeting["meeting"]["status"]) == ("Họp toàn xã", "scheduled")
            tally = meeting["motions"][0]["tally"]
            assert (tally["yes"], tally["no"], tally["abstain"], tally["turnout"], tally["passed"]) == \
                (20, 0, 0, 20, True)
            assert [(u["voter"], u["count"], u["reason"]) for u in tally["uncounted"]] == [("#abstain", 5, "late")]
            assert sync(node)["rejected_changes"] == 2  # the rename+status change and the million
        assert sync(hq)["digest"] == sync(halls[1])["digest"]
    finally:
        stop_all(nodes)
