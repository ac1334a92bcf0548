"""Issue 17, the Zalo bridge's sans-IO parts: judging the OA's answers (every documented error
shape, garbage and 5xx), the token refresh, the webhook signature (forged, replayed, stale,
Hypothesis on arbitrary bodies), the outbox's states across a restart, and the credentials file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from meshmeet.errors import MeshmeetError
from meshmeet.zalo import api
from meshmeet.zalo.creds import ZaloCreds, read_creds, write_creds
from meshmeet.zalo.outbox import Outbox
from meshmeet.zalo.webhook import WebhookError, mac_of, verify
from conftest import doc_json_blocks

NOW = 1_800_000_000.0


def j(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize("status, body, want", [
    (200, j({"error": 0, "message": "Success", "data": {"message_id": "m1", "user_id": "u"}}), api.Ok),
    (200, j({"error": -216, "message": "Access token is invalid"}), api.TokenInvalid),
    (200, j({"error": -124, "message": "Access token expired"}), api.TokenInvalid),
    (200, j({"error": -32, "message": "Exceed request per minute"}), api.Retry),
    (200, j({"error": -211, "message": "Out of quota"}), api.Retry),
    (200, j({"error": -213, "message": "User has not interacted with the OA in the last 7 days"}), api.Failed),
    (200, j({"error": -201, "message": "Parameters are invalid"}), api.Failed),
    (502, b"<html>502 Bad Gateway</html>", api.Retry), (429, b"", api.Retry),
    (200, b"<html>captive portal</html>", api.Retry), (200, j([1, 2]), api.Retry),
    (None, b"", api.Retry), (404, j({"error": -404, "message": "no such endpoint"}), api.Failed),
])
def test_every_answer_of_the_oa_is_judged(status, body, want) -> None:
    got = api.judge(status, body)
    assert isinstance(got, want)
    if isinstance(got, api.Retry) and got.code in api.QUOTA_ERRORS:
        assert got.after_s == api.QUOTA_WAIT_S
    if isinstance(got, api.Failed):
        assert got.code < 0 and got.message


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.integers(100, 599)), st.binary(max_size=300))
def test_judge_never_crashes(status, body) -> None:
    assert isinstance(api.judge(status, body), (api.Ok, api.Retry, api.TokenInvalid, api.Failed))
    assert isinstance(api.judge_refresh(status, body, NOW), (api.Tokens, api.RefreshRejected, api.Retry))


def test_token_refresh_answers() -> None:
    got = api.judge_refresh(200, j({"access_token": "a", "refresh_token": "r", "expires_in": "90000"}), NOW)
    assert got == api.Tokens("a", "r", NOW + 90000)
    bad = api.judge_refresh(200, j({"error": -14014, "error_name": "Invalid refresh token",
                                    "error_description": "expired"}), NOW)
    assert isinstance(bad, api.RefreshRejected) and bad.code == -14014
    assert isinstance(api.judge_refresh(503, b"", NOW), api.Retry)
    req = api.refresh_request("https://o", "app", "sec", "tok")
    assert req.headers["secret_key"] == "sec" and b"grant_type=refresh_token" in req.body


def test_chat_messages_skip_malformed_entries() -> None:
    data = [{"src": 1, "message_id": "m1", "from_id": "u1", "to_id": "oa", "type": "text", "message": "hi", "time": 5},
            {"src": 0, "message_id": "m2", "from_id": "oa", "to_id": "u1", "message": "ok", "time": 6},
            {"src": 7, "message_id": "m3"}, "junk", {"src": 1, "message_id": "", "message": "x", "time": 1}]
    got = api.chat_messages(data)
    assert [(m.message_id, m.from_user, m.user_id) for m in got] == [("m1", True, "u1"), ("m2", False, "u1")]


def event(ts: str, **over) -> bytes:
    doc = {"app_id": "app", "event_name": "user_send_text", "timestamp": ts, "sender": {"id": "u1"},
           "message": {"msg_id": "m1", "text": "Xin chào"}, **over}
    return json.dumps(doc).encode()


def test_webhook_signature_is_checked() -> None:
    ts = str(int(NOW * 1000))
    body = event(ts)
    mac = mac_of("app", body, ts, "secret")
    got = verify("app", "secret", body, "mac=" + mac, NOW)
    assert got is not None and (got.message_id, got.user_id, got.text) == ("m1", "u1", "Xin chào")
    for header in (None, "", "mac=" + "0" * 64, mac_of("app", body, ts, "other")):
        with pytest.raises(WebhookError) as e:
            verify("app", "secret", body, header, NOW)
        assert e.value.status == 401
    stale = str(int((NOW - 2 * 86_400) * 1000))
    with pytest.raises(WebhookError):
        verify("app", "secret", event(stale), mac_of("app", event(stale), stale, "secret"), NOW)
    follow = event(ts, event_name="follow")
    assert verify("app", "secret", follow, mac_of("app", follow, ts, "secret"), NOW) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.text(max_size=80))
def test_webhook_never_accepts_an_unsigned_body(body: bytes, header: str) -> None:
    try:
        verify("app", "secret", body, header, NOW)
    except WebhookError as e:
        assert e.status in (400, 401, 413)
    else:
        raise AssertionError("accepted without the OA's signature")


def test_outbox_survives_a_restart_and_sending_becomes_unsure(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    assert box.enqueue("reply:1", "cs", "u1", "", "Trả lời", NOW) and not box.enqueue("reply:1", "cs", "u1", "", "x", NOW)
    box.enqueue("reply:2", "cs", "u2", "", "Trả lời 2", NOW)
    box.sending("reply:1", NOW)
    box.retry("reply:2", "HTTP 502", 0.0, NOW, unsure=False, retry_max_s=60)
    box.close()
    box = Outbox(tmp_path)  # a crash while reply:1 was on its way
    assert stat.S_IMODE((tmp_path / "zalo.sqlite").stat().st_mode) == 0o600
    states = {i.key: (i.state, i.attempts) for i in box.items()}
    assert states == {"reply:1": ("unsure", 1), "reply:2": ("queued", 0)}
    assert [i.key for i in box.due(NOW)] == ["reply:1"] and [i.key for i in box.due(NOW + 10)] == ["reply:1", "reply:2"]
    box.sent("reply:1", "oa-m1", NOW)
    box.failed("reply:2", "-213: outside the window", NOW)
    assert box.counts() == {"queued": 0, "sending": 0, "unsure": 0, "sent": 1, "failed": 1}
    assert box.requeue("reply:2", NOW) and not box.requeue("reply:1", NOW)
    assert box.take_in("m1", "u1", "hi", 5) and not box.take_in("m1", "u1", "hi", 5)
    box.stored("m1", "f1")
    assert box.forget_users_before(int((NOW + 1) * 1000)) == 2  # the stored inbox row, the sent item's user id


def test_credentials_are_0600_and_refused_when_readable(tmp_path: Path) -> None:
    creds = ZaloCreds(app_id="1", app_secret='s"\\x', oa_secret_key="k", refresh_token="r")
    path = write_creds(tmp_path, creds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and read_creds(tmp_path) == creds
    os.chmod(path, 0o644)
    with pytest.raises(MeshmeetError, match="chmod 600"):
        read_creds(tmp_path)
    with pytest.raises(MeshmeetError):
        write_creds(tmp_path, ZaloCreds(app_id="1", app_secret="", oa_secret_key="k", refresh_token="r"))


def test_doc_vectors() -> None:

    from meshmeet.citizens import codes
    from meshmeet.node.zalo_service import mark_of

    v = doc_json_blocks("protocol/citizens.md", "citizens-vectors")[0]
    for raw, code in v["short_codes"]:
        assert codes.make_code(bytes.fromhex(raw)) == code
    w = v["webhook"]
    assert mac_of(w["app_id"], w["body"].encode(), w["timestamp"], w["oa_secret_key"]) == w["mac"]
    got = verify(w["app_id"], w["oa_secret_key"], w["body"].encode(), "mac=" + w["mac"], int(w["timestamp"]) / 1000)
    assert got is not None and got.text == "Xin chào"
    for key, mark in v["marks"]:
        assert mark_of(key) == mark
