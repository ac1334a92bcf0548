"""The web app's HTTP side on a real loopback aiohttp server with a stub node API: pages and their
headers, chair login (wrong PIN, rate limit, no PIN, not HQ), the API guard, uploads (sizes,
names, the temp file removed), CA download and QR, minutes, and HTTPS on a second listener."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from meshmeet.web import tls
from meshmeet.api.contract import dispatch_table
from meshmeet.web.app import WebappOptions, WebappShared, auth, make_setup
from meshmeet.web.app import routes as routes_mod
from meshmeet.web.gateway import CONTEXT_KEY, build_app
from meshmeet.web.hub import Hub

PIN = "246810"
TOKEN = "local-token-for-tests"


class Stub:
    def __init__(self, can_chair: bool = True) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.can_chair = can_chair
        self.upload_seen: bytes | None = None
        self.upload_path: Path | None = None
        self.data_dir = Path("/nonexistent")

    def table(self):
        async def info(args):
            return {"node_id": "n1", "site": "UBND xã", "role": "hq" if self.can_chair else "hall", "commune": "Xã Thử",
                    "can_chair": self.can_chair, "sites": {"n1": "UBND xã"}, "tablet_url": "https://192.168.1.10:8443"}

        def record(name):
            async def h(args):
                self.calls.append((name, args))
                if name == "doc_add":
                    self.upload_path = self.data_dir / routes_mod.UPLOAD_DIR / args["upload"]
                    self.upload_seen = self.upload_path.read_bytes()
                    return {"id": "d1", "size": len(self.upload_seen)}
                if name == "meeting":
                    return {"meeting": {"id": args["id"], "title": "Họp", "status": "started"}, "agenda": [],
                            "attendance": {"per_hall": [{"node": "n1", "site": "UBND xã", "present": 3}], "total": 3},
                            "motions": []}
                if name == "announcements":
                    return {"announcements": [{"id": "a", "text": "<b>x</b>", "urgent": 0, "at": 1}]}
                return {"ok": True}
            return h

        names = ["meeting_create", "doc_add", "vote", "meeting", "announcements", "floor"]
        handlers = {"webapp_info": info, **{n: record(n) for n in names}}
        return dispatch_table(handlers)


async def _serve(data_dir: Path, stub: Stub, https: bool):
    shared = WebappShared()
    stub.data_dir = data_dir
    opts = WebappOptions(data_dir=data_dir, https_host="127.0.0.1" if https else None, https_port=0, local_token=TOKEN)
    app = build_app(stub.table(), Hub(), app_setup=make_setup(opts, shared))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    for serving in app[CONTEXT_KEY].on_serving:  # as the bridge does: the HTTPS site
        await serving(runner)
    return runner, f"http://127.0.0.1:{port}", shared


def run(data_dir: Path, scenario, *, stub: Stub | None = None, https: bool = False):
    stub = stub or Stub()

    async def main():
        runner, url, shared = await _serve(data_dir, stub, https)
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                return await scenario(http, url, stub, shared)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


async def _json(resp) -> tuple[int, dict]:
    return resp.status, await resp.json()


def browser(url: str) -> dict:
    return {"Origin": url}


async def _login(http, url, pin=PIN):
    async with http.post(url + "/app/login", json={"pin": pin}, headers=browser(url)) as r:
        return await _json(r)


@pytest.fixture
def hq(tmp_path: Path) -> Path:
    auth.write_pin(tmp_path, PIN)
    return tmp_path


def test_pages_served_with_security_headers(hq: Path) -> None:
    async def scenario(http, url, stub, shared):
        out = {}
        for path in ("/", "/tv", "/tablet", "/chair", "/ca", "/minutes/abc"):
            async with http.get(url + path) as r:
                out[path] = (r.status, r.headers.get("Content-Security-Policy", ""), await r.text())
        return out

    for path, (status, csp, body) in run(hq, scenario).items():
        assert status == 200, path
        assert "script-src 'self'" in csp and "object-src 'none'" in csp
        assert "<script>" not in body  # no inline script anywhere


def test_chair_login_wrong_pin_then_rate_limited_then_api(hq: Path) -> None:
    async def scenario(http, url, stub, shared):
        results = [await _login(http, url, "000000") for _ in range(auth.FREE_ATTEMPTS + 1)]
        async with http.post(url + "/api/meeting_create", json={"title": "x"}, headers=browser(url)) as r:
            guarded = await _json(r)
        return results, guarded, shared.logins_refused

    results, guarded, refused = run(hq, scenario)
    assert [s for s, _ in results[:auth.FREE_ATTEMPTS]] == [401] * auth.FREE_ATTEMPTS
    assert results[0][1]["error"]["vi"] == "Mã PIN không đúng"
    assert results[-1][0] == 429 and "thử lại sau" in results[-1][1]["error"]["vi"]
    assert guarded[0] == 401 and guarded[1]["error"]["code"] == "chair_login"
    assert refused == auth.FREE_ATTEMPTS + 1


def test_chair_session_allows_chair_api_and_pin_change_ends_it(hq: Path) -> None:
    async def scenario(http, url, stub, shared):
        assert (await _login(http, url))[0] == 200
        async with http.post(url + "/api/meeting_create", json={"title": "Họp"}, headers=browser(url)) as r:
            first = r.status
        async with http.get(url + "/app/session") as r:
            chair = (await r.json())["chair"]
        auth.write_pin(hq, "999999")  # `meshmeet chair-pin` while the node runs
        async with http.post(url + "/api/meeting_create", json={"title": "Họp"}, headers=browser(url)) as r:
            after = r.status
        return first, chair, after, stub.calls

    first, chair, after, calls = run(hq, scenario)
    assert first == 200 and chair is True and after == 401
    assert calls == [("meeting_create", {"title": "Họp"})]


def test_guard_cross_origin_forbidden_names_and_local_cli(hq: Path) -> None:
    async def scenario(http, url, stub, shared):
        out = {}
        async with http.post(url + "/api/vote", json={"motion_id": "m", "choice": "yes"}, headers={"Origin": "http://evil.example"}) as r:
            out["cross"] = await _json(r)
        async with http.post(url + "/api/doc_add", json={"meeting_id": "m", "path": "/etc/passwd"}, headers=browser(url)) as r:
            out["doc_add"] = await _json(r)
        async with http.post(url + "/api/vote", json={"motion_id": "m", "choice": "yes"}, headers=browser(url)) as r:
            out["vote"] = r.status  # a hall's own action: no PIN needed
        async with http.get(url + "/api/floor", headers=browser(url)) as r:
            out["floor_status"] = r.status
        async with http.post(url + "/api/floor", json={"action": "grant", "site": "x"}, headers=browser(url)) as r:
            out["floor_grant"] = r.status
        async with http.post(url + "/api/floor", json={"action": "allow", "site": "x"}, headers=browser(url)) as r:
            out["floor_allow"] = r.status  # the chair page's extra voice: the chair only
        async with http.post(url + "/api/meeting_create", json={"title": "no token"}) as r:
            out["loopback"] = r.status  # loopback and no browser headers: grants nothing any more
        async with http.post(url + "/api/meeting_create", json={"title": "x"}, headers={"X-Meshmeet-Token": "guess"}) as r:
            out["bad_token"] = await _json(r)
        async with http.post(url + "/api/meeting_create", json={"title": "cli"}, headers={"X-Meshmeet-Token": TOKEN}) as r:
            out["cli"] = r.status  # the local meshmeet CLI sends the node's token
        return out, [c[0] for c in stub.calls]

    out, calls = run(hq, scenario)
    assert out["cross"][0] == 403 and out["cross"][1]["error"]["code"] == "cross_origin"
    assert out["doc_add"][0] == 403 and "trình duyệt" in out["doc_add"][1]["error"]["vi"]
    assert out["vote"] == 200 and out["floor_status"] == 200 and out["floor_grant"] == 401 and out["cli"] == 200
    assert out["floor_allow"] == 401
    assert out["loopback"] == 401 and out["bad_token"][0] == 401 and out["bad_token"][1]["error"]["code"] == "bad_token"
    assert calls == ["vote", "floor", "meeting_create"]


def test_no_pin_and_not_hq_are_explained(tmp_path: Path) -> None:
    async def scenario(http, url, stub, shared):
        return await _login(http, url)

    status, body = run(tmp_path, scenario)
    assert status == 409 and "meshmeet chair-pin --data-dir" in body["error"]["vi"]
    auth.write_pin(tmp_path, PIN)
    status, body = run(tmp_path, scenario, stub=Stub(can_chair=False))
    assert status == 403 and body["error"]["code"] == "not_hq"


@pytest.mark.parametrize("body", [b"not json", b'{"pin": 246810}', b'{"pin": "' + b"1" * 2000 + b'"}', b"[]"],
                         ids=["text", "number", "huge", "array"])
def test_malformed_login_refused(hq: Path, body: bytes) -> None:
    async def scenario(http, url, stub, shared):
        async with http.post(url + "/app/login", data=body, headers=browser(url)) as r:
            return await _json(r)

    status, out = run(hq, scenario)
    assert status in (400, 413) and out["error"]["vi"]


def test_upload_stores_document_and_removes_temp_file(hq: Path, monkeypatch) -> None:
    monkeypatch.setattr(routes_mod, "MAX_UPLOAD_BYTES", 1000)

    async def scenario(http, url, stub, shared):
        out = {}
        async with http.post(url + "/app/upload?meeting_id=m1&name=a.pdf", data=b"x" * 10, headers=browser(url)) as r:
            out["anon"] = r.status
        await _login(http, url)
        async with http.post(url + "/app/upload?meeting_id=m1&name=../../etc/Biên%20bản.pdf", data=b"%PDF" * 100, headers=browser(url)) as r:
            out["ok"] = await _json(r)
        async with http.post(url + "/app/upload?meeting_id=m1&name=big.pdf", data=b"x" * 1001, headers=browser(url)) as r:
            out["big"] = await _json(r)

        async def stream():
            for _ in range(20):
                yield b"y" * 100

        async with http.post(url + "/app/upload?meeting_id=m1&name=s.pdf", data=stream(), headers=browser(url)) as r:
            out["big_stream"] = r.status
        async with http.post(url + "/app/upload?meeting_id=m1&name=", data=b"x", headers=browser(url)) as r:
            out["noname"] = r.status
        async with http.post(url + "/app/upload?meeting_id=bad%20id&name=a", data=b"x", headers=browser(url)) as r:
            out["badid"] = r.status
        async with http.post(url + "/app/upload?meeting_id=m1&name=e.pdf", data=b"", headers=browser(url)) as r:
            out["empty"] = r.status
        return out, stub.calls, stub.upload_seen, shared.uploads

    out, calls, seen, uploads = run(hq, scenario)
    assert out["anon"] == 401
    assert out["ok"][0] == 200 and seen == b"%PDF" * 100 and uploads == 1
    doc_calls = [a for n, a in calls if n == "doc_add"]
    assert len(doc_calls) == 1 and doc_calls[0]["name"] == "Biên bản.pdf" and doc_calls[0]["meeting_id"] == "m1"
    assert set(doc_calls[0]) == {"meeting_id", "upload", "name"} and "/" not in doc_calls[0]["upload"]
    assert not (hq / routes_mod.UPLOAD_DIR / doc_calls[0]["upload"]).exists()
    assert out["big"][0] == 413 and "200 MB" in out["big"][1]["error"]["vi"]
    assert out["big_stream"] == 413 and out["noname"] == 400 and out["badid"] == 400 and out["empty"] == 400
    assert list((hq / "uploads").iterdir()) == []


def test_ca_download_qr_and_minutes(hq: Path) -> None:
    tls.create_ca(hq, "Xã Thử")

    async def scenario(http, url, stub, shared):
        async with http.get(url + "/app/ca.crt") as r:
            der = (r.status, r.content_type, await r.read())
        async with http.get(url + "/app/ca-qr.svg") as r:
            svg = (r.status, await r.text())
        async with http.get(url + "/app/minutes/m9.json") as r:
            minutes = await _json(r)
        async with http.get(url + "/app/minutes/..%2Fx.json") as r:
            bad = r.status
        return der, svg, minutes, bad

    der, svg, minutes, bad = run(hq, scenario)
    assert der[0] == 200 and der[1] == "application/x-x509-ca-cert" and der[2] == tls.ca_der(hq)
    assert svg[0] == 200 and svg[1].lstrip().startswith("<svg") and "xmlns" in svg[1]
    assert minutes[0] == 200 and len(minutes[1]["sha256"]) == 64
    assert minutes[1]["record"]["announcements"] == [{"text": "<b>x</b>", "urgent": False}]
    assert bad in (400, 404)


def test_https_listener_serves_same_app(hq: Path) -> None:
    tls.create_ca(hq, "Xã Thử")
    tls.issue_own_cert(hq, tls.NodeNames(("t.local", "localhost"), ("127.0.0.1",)), "UBND xã")

    async def scenario(http, url, stub, shared):
        ctx = ssl.create_default_context(cafile=str(hq / "ca.crt"))
        async with http.get(shared.https.url + "/app/session", ssl=ctx) as r:
            body = await r.json()
        async with http.post(shared.https.url + "/api/meeting_create", json={"title": "x"}, ssl=ctx) as r:
            lan = r.status  # over TLS nobody is a local tool: chair login needed
        return body, lan

    body, lan = run(hq, scenario, https=True)
    assert body["site"] == "UBND xã" and lan == 401
