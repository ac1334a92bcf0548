"""The swarm through the trio driver (node/sync_service.py, sync_inbox.py): real stores on disk,
in-memory links (the fake node of test_node_sync_service.py). With feature swarm/1 told for each
peer (as capability_service.py does), two halls linked to HQ and to each other trade chunks and
HQ sends each chunk about once; without it, no HAVE is ever on the wire and HQ sends each chunk
to both halls.
"""

from __future__ import annotations

import random

import msgpack
import trio

from meshmeet.sync.messages import HAVE
from meshmeet.wire import services

from test_node_sync_service import commune, settle  # noqa: F401  (commune is a fixture)


async def _document_to_two_halls(net, nodes, tmp_path, swarm: bool) -> tuple[int, int]:
    hq, hall1, hall2 = nodes
    haves = []
    send = net.send

    def spy(src: str, dst: str, payload: bytes) -> bool:
        if payload[0] == services.SYNC and msgpack.unpackb(payload[1:])[0] == HAVE:
            haves.append((src, dst))
        return send(src, dst, payload)

    net.send = spy
    ids = [n.key.node_id for n in nodes]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        net.link(ids[a], ids[b])
        if swarm:
            now = trio.current_time()
            nodes[a].sync.peer_formats_changed(ids[b], frozenset({2, 3}), now, swarm=True)
            nodes[b].sync.peer_formats_changed(ids[a], frozenset({2, 3}), now, swarm=True)
    mid = (await hq.api("meeting_create", {"title": "Họp"}))["id"]
    path = tmp_path / "ban-cap-nhat.bin"
    path.write_bytes(random.Random(5).randbytes(4 << 20))  # 16 chunks
    doc = await hq.api("doc_add", {"meeting_id": mid, "path": str(path)})
    await settle(nodes, "document everywhere")
    for h in (hall1, hall2):
        assert b"".join(h.sync.store.read_document(doc["id"])) == path.read_bytes()
    return hq.status_extras["sync"]()["chunks_served"], len(haves)


async def test_with_the_swarm_halls_trade_and_hq_sends_each_chunk_about_once(commune, tmp_path):  # noqa: F811
    net, nodes = commune
    served, haves = await _document_to_two_halls(net, nodes, tmp_path, swarm=True)
    assert haves > 0
    assert served <= 18  # 16 chunks (16 in every run seen); without the swarm 32 (test below)


async def test_without_the_feature_no_have_is_sent_and_hq_serves_both_halls(commune, tmp_path):  # noqa: F811
    net, nodes = commune
    served, haves = await _document_to_two_halls(net, nodes, tmp_path, swarm=False)
    assert haves == 0
    assert served == 32
