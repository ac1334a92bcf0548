"""The web app in real nodes: the hall's HTTPS certificate comes from HQ over the mesh (via the
hall's link), both chain to the commune CA; `meshmeet chair-pin` refuses bad PINs in one line;
browser-like and token-less loopback requests need the chair login while the local CLI (with the
node's token) does not."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from browser.webapp_nodes import get_json, hq_and_hall, set_pin, webapp

pytestmark = pytest.mark.slow


def post(url: str, args: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(args).encode(), method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_hall_certificate_over_mesh_and_access(tmp_path) -> None:
    with hq_and_hall(tmp_path) as (hq, hall):
        ca = ssl.create_default_context(cafile=str(hq.data_dir / "ca.crt"))
        hall_status = webapp(hall)
        assert hall_status["certificate"]["current"] and hall_status["ca_fingerprint"] == webapp(hq)["ca_fingerprint"]
        assert webapp(hq)["certs_issued"] >= 1
        assert get_json(hall_status["https"] + "/app/session", context=ca)["role"] == "hall"
        assert (hq.data_dir / "ca.key").stat().st_mode & 0o777 == 0o600

        origin = {"Origin": hq.url, "Content-Type": "application/json"}
        status, body = post(hq.url + "/api/meeting_create", {"title": "Họp"}, origin)
        assert status == 401 and body["error"]["code"] == "chair_login"
        status, body = post(hq.url + "/api/meeting_create", {"title": "Loopback, no token"})
        assert status == 401 and body["error"]["code"] == "chair_login"  # loopback alone grants nothing
        status, body = post(hq.url + "/api/meeting_create", {"title": "Họp qua CLI"}, hq.token_header())
        assert status == 200 and body["id"]
        status, body = post(hall.url + "/app/login", {"pin": "246810"}, origin | {"Origin": hall.url})
        assert status == 403 and body["error"]["code"] == "not_hq"


def test_chair_pin_cli_refuses_bad_pin_in_one_line(tmp_path) -> None:
    from nodeproc import meshmeet

    d = tmp_path / "hq"
    meshmeet("init", "--data-dir", str(d), "--commune", "Xã Thử", "--site", "UBND xã")
    bad = set_pin(d, "12ab")
    assert bad.returncode != 0 and "chữ số" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (d / "chair-pin").exists()
    ok = set_pin(d, "24681012")
    assert ok.returncode == 0 and (d / "chair-pin").stat().st_mode & 0o777 == 0o600
    assert "24681012" not in (d / "chair-pin").read_text() + ok.stdout
    nodir = set_pin(tmp_path / "nothing", "246810")
    assert nodir.returncode != 0 and "meshmeet init" in nodir.stderr


def test_certificate_request_forwarded_through_a_relay_hall(tmp_path) -> None:
    """HQ - Thôn 1 - Thôn 2 in a chain: Thôn 2 has no link to HQ; its request goes up through
    Thôn 1 (its tree parent) and the certificate comes back down."""
    from nodeproc import NodeProcess, make_commune, meshmeet, stop_all, wait_for

    hq_dir, invites = make_commune(tmp_path, 2)
    for d in [hq_dir] + [d for d, _ in invites]:
        d.mkdir(exist_ok=True)
        (d / "webapp.toml").write_text('https = "127.0.0.1:0"\n')
    nodes = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        for d, code in invites:
            meshmeet("join", "--data-dir", str(d), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        relay = NodeProcess(invites[0][0], "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(relay)
        end = NodeProcess(invites[1][0], "--peer", f"127.0.0.1:{relay.mesh_port}", mdns=False)
        nodes.append(end)
        wait_for(lambda: webapp(end)["https"], "the end hall's certificate through the relay", proc=end)
        assert hq.node_id not in end.link_states()  # never linked to HQ directly
        ca = ssl.create_default_context(cafile=str(hq_dir / "ca.crt"))
        assert get_json(webapp(end)["https"] + "/app/session", context=ca)["site"] == "Thôn 2"
        assert webapp(hq)["certs_issued"] >= 2
    finally:
        stop_all(nodes)
