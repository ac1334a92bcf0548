"""GET /app/doc/{id}: a document streamed to a tablet, on a real loopback aiohttp server.

The stub node API serves `doc` and `doc_chunk` from a real file cut by meshmeet.store.chunks,
the way the state API does (base64 chunks, 409 while one is missing). Checks: the download's
SHA-256 equals the original's, headers (type from the name, inline with the Vietnamese name,
ETag/304, sandbox for active types), 409 with a bilingual message while chunks are missing,
404 and 400 passed through as JSON, a chunk vanishing mid-download cuts the response short.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import random
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from meshmeet.store import chunks as chunking
from meshmeet.api.contract import ApiError, dispatch_table
from meshmeet.web.app import WebappOptions, WebappShared, make_setup
from meshmeet.web.gateway import build_app
from meshmeet.web.hub import Hub


class DocStub:
    """doc / doc_chunk over real chunks of real files, with chunks that can be made missing."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self.chunks: dict[str, list[bytes | None]] = {}
        self.calls: list[str] = []

    def add(self, doc_id: str, name: str, data: bytes) -> None:
        pieces = list(chunking.split(io.BytesIO(data)))
        self.docs[doc_id] = {"id": doc_id, "meeting_id": "m1", "name": name, "size": len(data),
                             "sha256": hashlib.sha256(data).hexdigest(), "chunk_bytes": chunking.CHUNK_BYTES}
        self.chunks[doc_id] = [d for _, d in pieces]

    def table(self):
        async def doc(args):
            self.calls.append("doc")
            d = self.docs.get(args.get("id"))
            if d is None:
                raise ApiError(404, "not_found", "Không tìm thấy tài liệu", "no such document")
            held = sum(1 for c in self.chunks[d["id"]] if c is not None)
            total = len(self.chunks[d["id"]])
            return {"document": {**d, "chunks_held": held, "chunks_total": total, "complete": held == total}}

        async def doc_chunk(args):
            self.calls.append("doc_chunk")
            data = self.chunks[args["id"]][args["index"]]
            if data is None:
                raise ApiError(409, "chunk_missing", "Chưa nhận phần này", "chunk not held yet")
            return {"index": args["index"], "data": base64.b64encode(data).decode()}

        async def info(args):
            return {"node_id": "n2", "site": "Thôn Đông", "role": "hall", "can_chair": False, "sites": {}}

        return dispatch_table({"doc": doc, "doc_chunk": doc_chunk, "webapp_info": info})


def run(tmp_path: Path, stub: DocStub, scenario):
    async def main():
        opts = WebappOptions(data_dir=tmp_path, https_host=None, https_port=0)
        app = build_app(stub.table(), Hub(), app_setup=make_setup(opts, WebappShared()))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as http:
                return await scenario(http, url)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_download_equals_the_original_file(tmp_path: Path) -> None:
    original = tmp_path / "Tờ trình ngân sách.pdf"
    original.write_bytes(random.Random(5).randbytes(3 * chunking.CHUNK_BYTES + 777))
    stub = DocStub()
    stub.add("d1", original.name, original.read_bytes())

    async def scenario(http, url):
        async with http.get(url + "/app/doc/d1") as r:
            body = await r.read()
            headers = r.headers.copy()
            status = r.status
        async with http.get(url + "/app/doc/d1", headers={"If-None-Match": headers["ETag"]}) as r:
            cached = r.status
        async with http.head(url + "/app/doc/d1") as r:
            head = (r.status, r.headers.get("Content-Length"))
        return status, body, headers, cached, head

    status, body, headers, cached, head = run(tmp_path, stub, scenario)
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(original.read_bytes()).hexdigest()
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Length"] == str(original.stat().st_size)
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("inline; ") and "filename*=UTF-8''T%E1%BB%9D%20tr%C3%ACnh" in disposition
    assert headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" not in headers
    assert cached == 304 and head == (200, str(original.stat().st_size))


def test_active_content_is_sandboxed_and_unknown_types_are_octet_stream(tmp_path: Path) -> None:
    stub = DocStub()
    stub.add("h1", "trang.html", b"<script>alert(1)</script>")
    stub.add("b1", "so-lieu.khongbiet", b"\x00\x01")

    async def scenario(http, url):
        out = {}
        for doc in ("h1", "b1"):
            async with http.get(url + f"/app/doc/{doc}") as r:
                out[doc] = (r.status, r.headers["Content-Type"], r.headers.get("Content-Security-Policy", ""), await r.read())
        return out

    got = run(tmp_path, stub, scenario)
    assert got["h1"][0] == 200 and got["h1"][1].startswith("text/html") and "sandbox" in got["h1"][2]
    assert got["h1"][3] == b"<script>alert(1)</script>"
    assert got["b1"][1] == "application/octet-stream" and "sandbox" in got["b1"][2]


def test_missing_chunks_give_409_and_unknown_ids_404_or_400(tmp_path: Path) -> None:
    stub = DocStub()
    stub.add("d2", "ban-do.png", random.Random(1).randbytes(2 * chunking.CHUNK_BYTES))
    stub.chunks["d2"][1] = None

    async def scenario(http, url):
        out = []
        for path in ("/app/doc/d2", "/app/doc/nope", "/app/doc/..%2Fetc"):
            async with http.get(url + path) as r:
                out.append((r.status, await r.json()))
        return out

    (s409, e409), (s404, e404), (s400, e400) = run(tmp_path, stub, scenario)
    assert s409 == 409 and e409["error"]["code"] == "doc_incomplete"
    assert "1/2" in e409["error"]["vi"] and "chưa tải xong" in e409["error"]["vi"]
    assert "1/2" in e409["error"]["en"] and "not fully arrived" in e409["error"]["en"]
    assert (s404, e404["error"]["code"]) == (404, "not_found")
    assert (s400, e400["error"]["code"]) == (400, "bad_document")
    assert stub.calls.count("doc_chunk") == 0  # nothing streamed before the check


def test_a_chunk_vanishing_mid_download_cuts_the_response_short(tmp_path: Path) -> None:
    stub = DocStub()
    stub.add("d3", "video.mp4", random.Random(2).randbytes(3 * chunking.CHUNK_BYTES))
    real = stub.table()

    async def flaky(name, args):
        if name == "doc_chunk" and args["index"] == 2:
            raise ApiError(409, "chunk_missing", "mất", "gone")
        return await real(name, args)

    async def main():
        opts = WebappOptions(data_dir=tmp_path, https_host=None, https_port=0)
        app = build_app(flaky, Hub(), app_setup=make_setup(opts, WebappShared()))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{runner.addresses[0][1]}/app/doc/d3") as r:
                    assert r.status == 200
                    try:
                        body = await r.read()
                    except aiohttp.ClientPayloadError:
                        return "cut"
                    return len(body)
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == "cut"


@pytest.mark.slow
def test_real_nodes_hall_serves_the_document_and_hq_sees_both_halls_ready(tmp_path: Path) -> None:
    """Three real `meshmeet run` processes: HQ adds a real file; each hall's /app/doc gives it back."""
    import urllib.request

    from nodeproc import start_commune, stop_all, wait_for
    from test_node_sync import converged, ok, random_file

    hq, halls = start_commune(tmp_path, 2)
    nodes = [hq, *halls]
    try:
        mid = ok(hq, "meeting_create", {"title": "Họp toàn xã"})["id"]
        original = random_file(tmp_path / "Báo cáo quý.pdf", 3 << 20)
        doc = ok(hq, "doc_add", {"meeting_id": mid, "path": str(original)})
        wait_for(lambda: converged(nodes), "document and holdings at both halls")
        want = hashlib.sha256(original.read_bytes()).hexdigest()
        for hall in halls:
            with urllib.request.urlopen(f"{hall.url}/app/doc/{doc['id']}", timeout=60) as resp:
                assert resp.headers["Content-Type"] == "application/pdf"
                assert hashlib.sha256(resp.read()).hexdigest() == want
        wait_for(lambda: all(s["ready"] for s in ok(hq, "doc_readiness", {"meeting_id": mid})["sites"]),
                 "every site ready at HQ")
        sites = ok(hq, "doc_readiness", {"meeting_id": mid})["sites"]
        assert sorted(s["source"] for s in sites) == ["replicated", "replicated", "self"]
        assert ok(halls[0], "doc", {"id": doc["id"]})["document"]["complete"] is True
    finally:
        stop_all(nodes)
