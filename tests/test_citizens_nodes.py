"""Issue 17 over real nodes: a resident's feedback from the hall page reaches HQ's inbox by sync,
HQ's reply comes back to the page by the short code; the contact travels sealed (readable at HQ
only, never in a list or a dump in plain text); the page's calls are closed to /api; a hall hides
only feedback it received (the law refuses the rest). Waits are hang guards."""

from __future__ import annotations

import http.cookiejar
import json
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from nodeproc import NodeProcess, start_commune, stop_all, wait_for

pytestmark = pytest.mark.slow

DECOMPOSED = unicodedata.normalize("NFD", "Đường liên thôn bị hỏng, đề nghị xã sửa 🙏")
PHONE = "0912 345 678"
RESIDENTS_ON_LOOPBACK = 'listen = "127.0.0.1:0"\n'


def residents_url(node: NodeProcess) -> str:
    """The residents' own listener (only /y-kien), as the node's status reports it."""
    port = wait_for(lambda: node.status()["citizens"]["residents_port"], "the residents' listener", proc=node)
    return f"http://127.0.0.1:{port}"


def call(url: str, *, data: bytes | None = None, headers: dict | None = None,
         opener: urllib.request.OpenerDirector | None = None) -> tuple[int, dict, dict]:
    """(status, the JSON answer or {"raw": text}, headers)."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=10) as r:
            status, raw, hdrs = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        status, raw, hdrs = e.code, e.read(), dict(e.headers)
    try:
        return status, json.loads(raw or b"null"), hdrs
    except ValueError:
        return status, {"raw": raw.decode(errors="replace")}, hdrs


def api(node: NodeProcess, name: str, args: dict | None = None, token: bool = True) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **(node.token_header() if token else {})}
    data = None if args is None else json.dumps(args).encode()
    status, body, _ = call(f"{node.url}/api/{name}", data=data, headers=headers)
    return status, body


class Resident:
    """A phone on the hall's Wi-Fi: the residents' listener, its own cookie jar, the page first
    (device cookie), then the form."""

    def __init__(self, node: NodeProcess) -> None:
        self.url = residents_url(node)
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with self.opener.open(self.url + "/y-kien", timeout=10) as r:
            assert r.status == 200 and "default-src 'none'" in r.headers["Content-Security-Policy"]

    def send(self, **fields: str) -> tuple[int, dict]:
        body = urllib.parse.urlencode(fields).encode()
        status, out, _ = call(self.url + "/y-kien/gui", data=body, opener=self.opener,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        return status, out

    def reply(self, code: str) -> tuple[int, dict]:
        status, out, _ = call(self.url + "/y-kien/tra-loi?ma=" + urllib.parse.quote(code), opener=self.opener)
        return status, out


@contextmanager
def hq_and_hall(base: Path, pin: bool = False):
    nodes: list[NodeProcess] = []

    def prepare(d: Path) -> None:
        if pin and d == base / "hq":
            from browser.webapp_nodes import set_pin

            assert set_pin(d).returncode == 0
        (d / "webapp.toml").write_text('https = "off"\n')
        (d / "citizens.toml").write_text(RESIDENTS_ON_LOOPBACK)

    try:
        hq, (hall,) = start_commune(base, 1, nodes, prepare=prepare)
        wait_for(lambda: hall.link_states().get(hq.node_id) == "up", "the hall's link to HQ", proc=hall)
        yield hq, hall
    finally:
        stop_all(nodes)


def test_hall_page_feedback_reaches_hq_and_the_reply_comes_back(tmp_path: Path) -> None:
    with hq_and_hall(tmp_path) as (hq, hall):
        phone = Resident(hall)
        status, out = phone.send(text=DECOMPOSED, name="Bà Lan", phone=PHONE, website="")
        assert status == 200, out
        code = out["code"]
        assert len(code) == 9 and code[4] == "-"
        nfc = unicodedata.normalize("NFC", DECOMPOSED)

        def at_hq() -> list:
            return [f for f in api(hq, "feedback_list")[1]["feedback"] if f["text"] == nfc]

        rows = wait_for(at_hq, "the resident's feedback in HQ's inbox")
        assert rows[0]["source"] == "hall_page" and rows[0]["node"] == hall.node_id
        assert "contact" not in rows[0] and "code" not in rows[0]
        # HQ (chair or CLI) opens the sealed contact; the hall's own list and dumps never show it.
        status, inbox = api(hq, "citizen_inbox")
        assert status == 200, inbox
        inbox = inbox["feedback"]
        assert inbox[0]["contact"] == {"name": "Bà Lan", "phone": "0912345678", "zalo": False}
        for node in (hq, hall):
            dump = json.dumps(api(node, "state", {"format": "json"})[1], ensure_ascii=False)
            assert "0912345678" not in dump and "Bà Lan" not in dump
            # nor the resident's reply code (it opens the reply): not for a LAN page, not for the CLI
            for token in (False, True):
                status, dump = api(node, "state", {"format": "json"}, token=token)
                assert status == 200 and dump["feedback"], dump
                text = json.dumps(dump, ensure_ascii=False)
                assert code not in text and code.replace("-", "") not in text
                assert all("code" not in r and "contact" not in r for r in dump["feedback"])
        assert api(hall, "citizen_inbox", token=False)[0] == 401  # chair only
        # The residents' listener has the page and nothing else; the page's calls are not
        # reachable through the gateway's /api from a browser either.
        for path in ("/api/status", "/api/feedback_list", "/ws/state", "/tv", "/chair", "/app/session"):
            assert call(phone.url + path)[0] == 404, path
        assert call(phone.url + "/y-kien/gui", data=b"text=hello", headers={
            "Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"})[0] == 403
        assert api(hall, "citizen_submit", {"text": "xin chào"}, token=False)[0] == 403
        # The page's batch call takes only the forms the page checked: no JSON is one, token or not.
        assert api(hall, "citizen_submit_page", {"items": [{"text": "xin chào"}]}, token=False)[0] == 403
        assert api(hall, "citizen_submit_page", {"items": [{"text": "xin chào"}]})[0] == 400
        assert api(hall, "citizen_lookup", {"code": code}, token=False)[0] == 403

        status, out = phone.reply(code.lower())
        assert status == 200 and out["replies"] == [] and out["text"] == nfc
        assert api(hq, "feedback_reply", {"feedback_id": rows[0]["id"], "text": "Xã sẽ sửa trong tuần"})[0] == 200
        got = wait_for(lambda: phone.reply(code)[1]["replies"], "HQ's reply at the hall page")
        assert got[0]["text"] == "Xã sẽ sửa trong tuần"
        assert phone.reply("ZZZZ-ZZZZ")[0] == 404

        # The TV wall shows it until the hall's secretary hides it; hiding reaches HQ too.
        assert [f["text"] for f in api(hall, "citizen_wall")[1]["feedback"]] == [nfc]
        assert api(hall, "feedback_hide", {"feedback_id": rows[0]["id"]}, token=False)[0] == 401
        assert api(hall, "feedback_hide", {"feedback_id": rows[0]["id"]})[0] == 200
        assert api(hall, "citizen_wall")[1]["feedback"] == []
        wait_for(lambda: api(hq, "citizen_wall")[1]["feedback"] == [], "the hide at HQ")
        # The law: a hall may not hide feedback another node received.
        status, out = Resident(hq).send(text="Ý kiến tại trụ sở")
        hq_fid = next(f["id"] for f in api(hq, "feedback_list")[1]["feedback"] if f["text"] == "Ý kiến tại trụ sở")
        wait_for(lambda: any(f["id"] == hq_fid for f in api(hall, "feedback_list")[1]["feedback"]), "HQ's feedback at the hall")
        status, out = api(hall, "feedback_hide", {"feedback_id": hq_fid})
        assert status == 403, out
