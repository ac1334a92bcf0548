"""Issue 17, the Zalo OA bridge in a real node against the OA emulator (tests/zalo_oa_emulator.py):
announcements marked "gửi Zalo" reach every follower exactly once through 5xx answers, a cut
connection after the OA took a message, an exhausted quota, an expired access token, the internet
cut and restored mid-outbox (the emulator stopped and started) and a kill -9 of the node with
items in flight; residents' messages come in as feedback (polling) and through the signed webhook
(a bad signature stores nothing); the chair's reply goes back as a customer-service message, and
one outside the 7-day window fails with the reason on /chair; a refused refresh token is a
bilingual alert. Waits are hang guards."""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import re
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from nodeproc import NodeProcess, make_commune, wait_for
from test_citizens_nodes import api, call
from zalo_fixtures import APP_ID, OA_SECRET, OaEmulator, zalo_setup

pytestmark = pytest.mark.slow

USERS = [f"84{n:010d}" for n in range(1, 6)]
MARK = re.compile(r"Mã tin: ([0-9A-F]{6})$")


def copies(oa: OaEmulator) -> collections.Counter:
    """(kind, user, mark) -> how many times the OA got it."""
    return collections.Counter((m["kind"], m["user_id"], MARK.search(m["text"]).group(1)) for m in oa.sent()["sent"])


def faults_left(oa: OaEmulator) -> dict:
    with sqlite3.connect(oa.state) as db:
        return {k: int(v) for k, v in db.execute("SELECT k, v FROM kv WHERE k IN ('fail_5xx', 'drop', 'quota')")}


def zalo(node: NodeProcess) -> dict:
    status, out = api(node, "zalo_status")
    assert status == 200, out
    return out


def settled(node: NodeProcess, want_sent: int) -> bool:
    s = zalo(node)
    return s["counts"]["sent"] >= want_sent and not (s["counts"]["queued"] or s["counts"]["unsure"] or s["counts"]["sending"])


def test_zalo_bridge_exactly_once_through_faults_cuts_and_restarts(tmp_path: Path) -> None:
    oa = OaEmulator(tmp_path)
    oa.start()
    hq_dir, _ = make_commune(tmp_path, 0)
    (hq_dir / "webapp.toml").write_text('https = "off"\n')
    done = zalo_setup(hq_dir, oa)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((hq_dir / "zalo.toml").stat().st_mode) == 0o600
    assert "secret" not in done.stdout + done.stderr
    oa.ctl("followers", {"users": USERS})
    node = NodeProcess(hq_dir, mdns=False)
    try:
        # 1. Two announcements for Zalo, one not; the OA fails in every way it can on the way.
        oa.ctl("faults", {"fail_5xx": 2, "drop": 1, "quota": 1})
        for text, z in (("Lịch tiêm phòng cho trẻ ngày 12", True), ("Chỉ trong xã", False), ("Cắt điện thôn Đông", True)):
            assert api(node, "announce", {"text": text, "zalo": z})[0] == 200
        wait_for(lambda: len(oa.sent()["sent"]) >= 4, "the first promotions at the OA")
        oa.stop()                                    # the internet is cut mid-outbox
        wait_for(lambda: zalo(node)["online"] is False, "the bridge to notice the cut")
        oa.start()                                   # and comes back
        wait_for(lambda: settled(node, 10), "every follower's copy sent")
        got = copies(oa)
        assert sorted(got.values()) == [1] * 10 and {u for _, u, _ in got} == set(USERS)
        # Every fault was met: the 502s and the cut answer came after the OA had taken the message,
        # so only the conversation lookup kept those from being sent twice.
        assert faults_left(oa) == {"fail_5xx": 0, "drop": 0, "quota": 0}
        items = [i for i in zalo(node)["items"] if i["kind"] == "promotion"]
        assert all(i["state"] == "sent" and i["oa_message_id"] for i in items)
        assert all(not i["text"].startswith("Chỉ trong xã") for i in items)

        # 2. The access token expires: refreshed by itself (the refresh token rotates, single use).
        refreshes = oa.sent()["refreshes"]
        oa.ctl("faults", {"expire_access": True})
        # 3. A node kill -9 with items in flight: nothing lost, nothing twice.
        oa.ctl("faults", {"fail_5xx": 3, "drop": 1})
        assert api(node, "announce", {"text": "Họp dân tối nay", "zalo": True})[0] == 200
        wait_for(lambda: any(i["kind"] == "promotion" and i["state"] != "sent" for i in zalo(node)["items"]),
                 "promotions of the third announcement in flight")
        node.kill9()
        node = NodeProcess(hq_dir, mdns=False)
        wait_for(lambda: settled(node, 15), "the third announcement after the restart")
        got = copies(oa)
        assert sorted(got.values()) == [1] * 15, got
        assert faults_left(oa) == {"fail_5xx": 0, "drop": 0, "quota": 0}
        assert oa.sent()["refreshes"] > refreshes

        # 4. A resident writes to the OA: polled in as feedback; the chair's reply goes back once.
        oa.ctl("user_message", {"user_id": USERS[0], "text": "Xin hỏi   lịch họp dân?"})
        old = int((time.time() - 8 * 86_400) * 1000)
        oa.ctl("user_message", {"user_id": "8400000099", "text": "Tin cũ từ tuần trước", "time_ms": old})

        def zalo_feedback() -> list:
            rows = [f for f in api(node, "feedback_list")[1]["feedback"] if f.get("source") == "zalo"]
            return rows if len(rows) == 2 else []

        rows = wait_for(zalo_feedback, "the residents' Zalo messages as feedback")
        assert {r["text"] for r in rows} == {"Xin hỏi lịch họp dân?", "Tin cũ từ tuần trước"}
        dump = json.dumps(api(node, "state", {"format": "json"})[1])
        assert USERS[0] not in dump and "8400000099" not in dump  # the user id is sealed in the row
        inbox = {f["text"]: f for f in api(node, "citizen_inbox")[1]["feedback"]}
        assert inbox["Xin hỏi lịch họp dân?"]["contact"]["zalo"] is True
        for r in rows:
            assert api(node, "feedback_reply", {"feedback_id": r["id"], "text": "Họp lúc 19 giờ"})[0] == 200
        wait_for(lambda: any(k[0] == "cs" for k in copies(oa)), "the chair's reply at the OA")
        wait_for(lambda: any(i["kind"] == "cs" and i["state"] == "failed" for i in zalo(node)["items"]),
                 "the reply outside the 7-day window failing")
        cs = [k for k, n in copies(oa).items() if k[0] == "cs"]
        assert [k[1] for k in cs] == [USERS[0]] and copies(oa)[cs[0]] == 1
        failed = next(i for i in zalo(node)["items"] if i["state"] == "failed")
        assert "7" in failed["error"]
        # The same message polled again is not taken in twice.
        time.sleep(2.5)
        assert len([f for f in api(node, "feedback_list")[1]["feedback"] if f.get("source") == "zalo"]) == 2

        # 5. The webhook: a signed event is feedback; a forged one stores nothing.
        ts = str(int(time.time() * 1000))
        event = json.dumps({"app_id": APP_ID, "event_name": "user_send_text", "timestamp": ts,
                            "sender": {"id": USERS[1]}, "recipient": {"id": "oa"},
                            "message": {"msg_id": "wh-1", "text": "Đèn đường hỏng"}}).encode()
        mac = hashlib.sha256(APP_ID.encode() + event + ts.encode() + OA_SECRET.encode()).hexdigest()
        hdr = {"Content-Type": "application/json"}
        assert call(node.url + "/zalo/webhook", data=event, headers={**hdr, "X-ZEvent-Signature": "mac=" + "0" * 64})[0] == 401
        assert call(node.url + "/zalo/webhook", data=event.replace(b"wh-1", b"wh-2"),
                    headers={**hdr, "X-ZEvent-Signature": "mac=" + mac})[0] == 401
        assert call(node.url + "/zalo/webhook", data=event, headers={**hdr, "X-ZEvent-Signature": "mac=" + mac})[0] == 200
        wait_for(lambda: any(f["text"] == "Đèn đường hỏng" for f in api(node, "feedback_list")[1]["feedback"]),
                 "the webhook's message as feedback")
        assert api(node, "zalo_webhook", {"body_b64": base64.b64encode(event).decode()}, token=False)[0] == 403

        # 6. The refresh token is revoked: a bilingual alert, and sending stops (nothing lost).
        oa.ctl("faults", {"revoke_refresh": True, "expire_access": True})
        assert api(node, "announce", {"text": "Thông báo sau khi thu hồi", "zalo": True})[0] == 200
        alert = wait_for(lambda: zalo(node)["alert"], "the refresh-token alert")
        assert "meshmeet zalo setup" in alert["vi"] and "refresh token" in alert["en"]
    finally:
        node.stop()
        oa.stop()
