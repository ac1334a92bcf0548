"""Documents on tablets and the readiness table, through SyncService and the state API in trio.

Real stores (SQLite files), in-memory links (the fake commune of test_node_sync_service).
Checks: a hall reads a document back chunk by chunk through `doc_chunk` and the bytes hash to
the original; 409 while a chunk is missing, 404/400 for unknown ids and indexes; the holdings
each node records reach HQ, so doc_readiness says true/false/null per roster site.
"""

from __future__ import annotations

import base64
import hashlib
import random

import pytest
import trio

from test_node_sync_service import HANG_GUARD_S, commune, settle  # noqa: F401  (commune is a fixture)
from meshmeet.api.contract import ApiError


async def read_whole(node, doc_id: str) -> bytes:
    first = await node.api("doc_chunk", {"id": doc_id, "index": 0})
    parts = [base64.b64decode(first["data"])]
    for i in range(1, first["count"]):
        got = await node.api("doc_chunk", {"id": doc_id, "index": str(i)})  # GET arguments are strings
        assert got["index"] == i and hashlib.sha256(base64.b64decode(got["data"])).hexdigest() == got["chunk_sha256"]
        parts.append(base64.b64decode(got["data"]))
    return b"".join(parts)


async def readiness(node, mid: str) -> dict[str, bool | None]:
    got = await node.api("doc_readiness", {"meeting_id": mid})
    return {s["site"]: s["ready"] for s in got["sites"]}


async def wait_ready(node, mid: str, want: dict) -> None:
    with trio.move_on_after(HANG_GUARD_S):
        while await readiness(node, mid) != want:
            await trio.sleep(0.01)
    assert await readiness(node, mid) == want


async def test_hall_reads_a_document_whole_and_hq_sees_every_site_ready(commune, tmp_path):
    net, (hq, hall1, hall2) = commune
    a, b, c = (n.key.node_id for n in (hq, hall1, hall2))
    mid = (await hq.api("meeting_create", {"title": "Họp"}))["id"]
    data = random.Random(7).randbytes((1 << 20) + 12345)  # 5 chunks, the last one short
    path = tmp_path / "bien-ban.pdf"
    path.write_bytes(data)
    doc = await hq.api("doc_add", {"meeting_id": mid, "path": str(path)})
    # HQ recorded its own holding when it imported the document; nobody else is heard yet.
    assert await readiness(hq, mid) == {"Site 0": True, "Site 1": None, "Site 2": None}
    assert hashlib.sha256(await read_whole(hq, doc["id"])).hexdigest() == hashlib.sha256(data).hexdigest()

    hq.sync.pace_pieces_per_s = 0.001  # HQ sends one piece, then waits: the hall holds the row only
    net.link(a, b)
    with trio.fail_after(HANG_GUARD_S):
        while hall1.sync.store.get("documents", doc["id"]) is None:
            await trio.sleep(0.01)
    info = (await hall1.api("doc", {"id": doc["id"]}))["document"]
    assert (info["complete"], info["chunks_total"], info["name"], info["size"]) == (False, 5, "bien-ban.pdf", len(data))
    with pytest.raises(ApiError) as err:
        await hall1.api("doc_chunk", {"id": doc["id"], "index": 4})
    assert err.value.status == 409 and err.value.code == "chunk_missing" and err.value.vi and err.value.en
    assert (await readiness(hall1, mid))["Site 1"] is False  # its own state, exact

    hq.sync.pace_pieces_per_s = None
    hq.sync._wake.set()
    net.link(b, c)  # hall2 only through hall1
    await settle([hq, hall1, hall2], "document and holdings everywhere")
    for hall in (hall1, hall2):
        got = await read_whole(hall, doc["id"])
        assert hashlib.sha256(got).hexdigest() == doc["sha256"] == hashlib.sha256(data).hexdigest()
    everyone = {"Site 0": True, "Site 1": True, "Site 2": True}
    for node in (hq, hall1, hall2):
        await wait_ready(node, mid, everyone)
    sites = (await hq.api("doc_readiness", {"meeting_id": mid}))["sites"]
    assert {s["site"]: (s["held"], s["total"], s["source"]) for s in sites} == {
        "Site 0": (1, 1, "self"), "Site 1": (1, 1, "replicated"), "Site 2": (1, 1, "replicated")}
    assert {s["site"]: s["linked"] for s in sites} == {"Site 0": True, "Site 1": True, "Site 2": False}


async def test_a_second_document_makes_sites_not_ready_until_it_arrives(commune, tmp_path):
    net, (hq, hall1, hall2) = commune
    a, b, c = (n.key.node_id for n in (hq, hall1, hall2))
    net.link(a, b)
    net.link(a, c)
    mid = (await hq.api("meeting_create", {"title": "Họp"}))["id"]
    first = tmp_path / "a.txt"
    first.write_bytes(b"chuong trinh" * 1000)
    await hq.api("doc_add", {"meeting_id": mid, "path": str(first)})
    await settle([hq, hall1, hall2], "first document")
    await wait_ready(hq, mid, {"Site 0": True, "Site 1": True, "Site 2": True})
    net.unlink(a, c)  # hall2 is cut off: it was heard, but will not get the second document
    second = tmp_path / "b.bin"
    second.write_bytes(random.Random(3).randbytes(300_000))
    await hq.api("doc_add", {"meeting_id": mid, "path": str(second)})
    await settle([hq, hall1], "second document at hall1")
    await wait_ready(hq, mid, {"Site 0": True, "Site 1": True, "Site 2": False})
    row = {s["site"]: s for s in (await hq.api("doc_readiness", {"meeting_id": mid}))["sites"]}["Site 2"]
    assert (row["held"], row["total"]) == (1, 2)
    net.link(a, c)
    await settle([hq, hall1, hall2], "second document at hall2")
    await wait_ready(hq, mid, {"Site 0": True, "Site 1": True, "Site 2": True})


async def test_doc_api_errors(commune, tmp_path):
    net, (hq, hall1, hall2) = commune
    mid = (await hq.api("meeting_create", {"title": "Họp"}))["id"]
    path = tmp_path / "x.txt"
    path.write_bytes(b"abc")
    doc = await hq.api("doc_add", {"meeting_id": mid, "path": str(path)})
    cases = [("doc", {"id": "khong-co"}, 404), ("doc_chunk", {"id": "khong-co", "index": 0}, 404),
             ("doc_chunk", {"id": doc["id"], "index": 1}, 400), ("doc_chunk", {"id": doc["id"], "index": -1}, 400),
             ("doc_chunk", {"id": doc["id"]}, 400), ("doc_chunk", {"id": doc["id"], "index": "x"}, 400),
             ("doc", {}, 400), ("doc_chunk", {"id": 5, "index": 0}, 400)]
    for name, args, status in cases:
        with pytest.raises(ApiError) as err:
            await hq.api(name, args)
        assert err.value.status == status, (name, args)
    got = await hq.api("doc_chunk", {"id": doc["id"], "index": 0})
    assert base64.b64decode(got["data"]) == b"abc" and got["count"] == 1
