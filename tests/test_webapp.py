"""The web app's pure parts: chair PIN hashing, sessions, the wrong-PIN limiter, the API policy,
the minutes record/hash and the certificate-exchange messages (Hypothesis for the parsers)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.cert_messages import (CertIssued, CertMessageError, CertRefused, CertRequest,
                                               decode_cert_message, encode_cert_message)
from meshmeet.node.webapp_service import read_https_setting
from meshmeet.web.app import auth, policy
from meshmeet.web.app.minutes import minutes_record, record_hash

# ---------------------------------------------------------------- PIN, sessions, limiter


def test_pin_hash_verifies_only_the_same_pin() -> None:
    stored = auth.hash_pin("246810")
    assert stored.startswith("scrypt$") and "246810" not in stored
    assert auth.verify_pin("246810", stored)
    assert not auth.verify_pin("246811", stored)
    assert auth.hash_pin("246810") != stored  # salted


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.text(max_size=200))
def test_verify_pin_never_raises_on_junk(pin: str, stored: str) -> None:
    assert auth.verify_pin(pin, stored) in (True, False)


@pytest.mark.parametrize("bad", ["12345", "1234567890123", "12a456", "", "١٢٣٤٥٦"])
def test_pin_format_refused(bad: str, tmp_path) -> None:
    with pytest.raises(auth.PinError) as e:
        auth.write_pin(tmp_path, bad)
    assert "chữ số" in e.value.vi and "digits" in e.value.en
    assert not auth.pin_path(tmp_path).exists()


def test_pin_file_is_private_and_loose_mode_refused(tmp_path) -> None:
    auth.write_pin(tmp_path, "135790")
    path = auth.pin_path(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert auth.verify_pin("135790", auth.read_pin_hash(tmp_path) or "")
    os.chmod(path, 0o644)
    with pytest.raises(auth.PinError):
        auth.read_pin_hash(tmp_path)
    assert auth.read_pin_hash(tmp_path / "nowhere") is None


def test_sessions_expire_and_end() -> None:
    s = auth.Sessions(lifetime_s=100.0)
    tok = s.create(now=1000.0)
    assert s.valid(tok, 1099.0)
    assert not s.valid(tok, 1100.0)
    tok2 = s.create(now=2000.0)
    assert not s.valid("forged", 2000.0) and not s.valid(None, 2000.0)
    s.end(tok2)
    assert not s.valid(tok2, 2001.0)
    toks = [s.create(now=3000.0) for _ in range(auth.MAX_SESSIONS + 5)]
    assert s.valid(toks[-1], 3000.0) and len(s._expiry) <= auth.MAX_SESSIONS


def test_rate_limit_backs_off_per_client_only() -> None:
    rl = auth.RateLimit()
    for _ in range(auth.FREE_ATTEMPTS - 1):
        rl.failed("a", 0.0)
    assert rl.wait_s("a", 0.0) == 0.0
    rl.failed("a", 0.0)
    assert rl.wait_s("a", 0.0) == auth.LOCKOUT_BASE_S
    rl.failed("a", 10.0)
    assert rl.wait_s("a", 10.0) == 2 * auth.LOCKOUT_BASE_S
    assert rl.wait_s("b", 10.0) == 0.0  # another tablet is not locked out by this one
    rl.succeeded("a")
    assert rl.wait_s("a", 10.0) == 0.0
    many = auth.RateLimit()
    for i in range(1000):
        many.failed(f"c{i % 50}", 100.0)
    assert many.wait_s("chair", 100.0) == 0.0  # the global limit that locked the chair out is gone
    assert many.wait_s("c7", 100.0) == auth.LOCKOUT_MAX_S
    assert many.wait_s("c7", 100.0 + auth.FORGET_S) == 0.0  # forgotten after an hour of quiet


_events = st.lists(st.tuples(st.sampled_from(["fail", "ok"]), st.integers(0, 40), st.floats(0.0, 400.0)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(_events, st.integers(2, 64))
def test_rate_limit_never_refuses_a_client_for_others_and_stays_bounded(events, max_clients) -> None:
    rl = auth.RateLimit(max_clients=max_clients)
    now = 0.0
    own: dict[str, int] = {}
    for kind, who, dt in events:
        now += dt
        client = f"10.0.0.{who}"
        if kind == "fail":
            rl.failed(client, now)
            own[client] = own.get(client, 0) + 1
        else:
            rl.succeeded(client)
            own.pop(client, None)
        assert rl.clients() <= max_clients
        assert rl.wait_s("192.168.1.5", now) == 0.0  # the chair: never failed, never refused
        for c, n in own.items():
            if n < auth.FREE_ATTEMPTS:
                assert rl.wait_s(c, now) == 0.0  # fewer failures than the free ones: no wait
            assert rl.wait_s(c, now) <= auth.LOCKOUT_MAX_S


@settings(max_examples=100, deadline=None)
@given(st.integers(auth.FREE_ATTEMPTS, 30))
def test_rate_limit_delays_grow_with_each_failure(n) -> None:
    rl = auth.RateLimit()
    waits = []
    for _ in range(n):
        rl.failed("x", 0.0)
        waits.append(rl.wait_s("x", 0.0))
    assert waits == sorted(waits) and waits[-1] > 0
    assert waits[-1] == min(auth.LOCKOUT_MAX_S, auth.LOCKOUT_BASE_S * 2 ** (n - auth.FREE_ATTEMPTS))


# ---------------------------------------------------------------- policy


def test_policy_chair_names_and_local_only_names() -> None:
    assert policy.needs_chair("meeting_create", "POST", {})
    assert policy.needs_chair("floor", "POST", {})
    assert not policy.needs_chair("floor", "GET", {})
    assert policy.needs_chair("floor", "GET", {"action": "grant"})
    assert policy.needs_chair("floor", "POST", {"action": "allow", "site": "Thôn 1"})
    assert policy.needs_chair("floor", "GET", {"action": "disallow"})
    assert not policy.needs_chair("vote", "POST", {}) and not policy.needs_chair("checkin", "POST", {})
    assert "doc_add" in policy.LOCAL_ONLY_APIS and "vote" not in policy.LOCAL_ONLY_APIS


# ---------------------------------------------------------------- minutes


def _meeting(order: int) -> dict:
    agenda = [{"id": "a1", "position": 1, "title": "Một", "status": "done"},
              {"id": "a2", "position": 2, "title": "Hai <b>", "status": "current"}]
    per_hall = [{"node": "n1", "site": "Thôn 1", "present": 35}, {"node": "n2", "site": "Thôn 2", "present": 12}]
    motions = [{"id": "m1", "title": "Làm đường", "rule": "majority", "status": "closed",
                "result": {"yes": 30, "no": 10, "abstain": 2, "turnout": 42, "present": 47, "quorum": True, "passed": True},
                "tally": {"yes": 30, "no": 10, "abstain": 2, "turnout": 42, "present": 50}},  # a late check-in moved the live tally
               {"id": "m0", "title": "Mở", "rule": "two-thirds", "status": "open", "result": None,
                "tally": {"yes": 1, "no": 0, "abstain": 0, "turnout": 1, "present": 47}}]
    if order:
        agenda, per_hall, motions = agenda[::-1], per_hall[::-1], motions[::-1]
    return {"meeting": {"id": "m", "title": "Họp", "starts": None, "status": "started", "current_item": "a2"},
            "agenda": agenda, "attendance": {"per_hall": per_hall, "total": 47}, "motions": motions,
            "documents": [{"id": "d", "chunks_held": order}]}


def test_minutes_hash_same_at_every_hall_whatever_the_order() -> None:
    anns = [{"id": "x", "text": "<script>", "urgent": 1, "at": 5.0}, {"id": "y", "text": "b", "urgent": 0, "at": 2.0}]
    sites = {"n1": "Thôn 1", "n2": "Thôn 2"}
    r0 = minutes_record(_meeting(0), anns, sites)
    r1 = minutes_record(_meeting(1), anns[::-1], sites)
    assert r0 == r1 and record_hash(r0) == record_hash(r1)
    assert r0["attendance"] == {"per_hall": {"Thôn 1": 35, "Thôn 2": 12}, "total": 47}
    assert r0["motions"][1]["result"]["present"] == 47  # the result HQ recorded, not the live tally
    assert [a["text"] for a in r0["announcements"]] == ["b", "<script>"]
    changed = minutes_record({**_meeting(0), "agenda": _meeting(0)["agenda"][:1]}, anns, sites)
    assert record_hash(changed) != record_hash(r0)


# ---------------------------------------------------------------- certificate exchange messages


@pytest.mark.parametrize("msg", [CertRequest("abcd", b"\x30\x82csr"), CertIssued("abcd", b"c", b"ca"),
                                 CertRefused("abcd", "không", "no")])
def test_cert_messages_round_trip(msg) -> None:
    assert decode_cert_message(encode_cert_message(msg)) == msg


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_cert_message_hostile_bytes(data: bytes) -> None:
    try:
        msg = decode_cert_message(data)
    except CertMessageError:
        return
    assert isinstance(msg, (CertRequest, CertIssued, CertRefused))


def test_cert_message_oversized_refused() -> None:
    with pytest.raises(CertMessageError):
        decode_cert_message(encode_cert_message(CertRequest("a", b"x" * 9000)))


def test_https_setting(tmp_path) -> None:
    assert read_https_setting(tmp_path) == ("0.0.0.0", 8443)
    (tmp_path / "webapp.toml").write_text('https = "off"\n')
    assert read_https_setting(tmp_path) is None
    (tmp_path / "webapp.toml").write_text('https = "127.0.0.1:0"\n')
    assert read_https_setting(tmp_path) == ("127.0.0.1", 0)
    (tmp_path / "webapp.toml").write_text('https = [\n')
    with pytest.raises(Exception) as e:
        read_https_setting(tmp_path)
    assert "webapp.toml" in str(e.value)
