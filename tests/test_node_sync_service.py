"""SyncService and the state API in trio, with real stores (SQLite files) and in-memory links.

The fake node offers exactly the plugin surface node.py offers (services, link listeners,
send, links.queue_depth/up_peers, status_extras, api_handlers, gateway); the links are
ordered queues delivered by a pump task. Checks: convergence through the driver, state
publications, chunk traffic kept behind a short link queue, the API's 400/403/404/409 for bad
input (never another exception, Hypothesis for the argument parsers), hostile sync bytes
closing only that session.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.api import state_args
from meshmeet.api.state_api import StateApi
from meshmeet.node.sync_service import BULK_QUEUE_MAX_MESSAGES, SyncService
from meshmeet.api.contract import ApiError
from meshmeet.wire import services

from conftest import registered

HANG_GUARD_S = 30.0


@dataclass(frozen=True)
class Member:
    short_id: int
    node_id: str
    site: str
    role: str
    priority: int = 0
    backup: bool = False


class FakeRoster:
    commune_name = "Xã Thử"

    def __init__(self, members: list[Member]) -> None:
        self._by_id = {m.node_id: m for m in members}

    def member_by_node_id(self, node_id: str) -> Member | None:
        return self._by_id.get(node_id)

    def members(self) -> list[Member]:
        return list(self._by_id.values())

    def open_seats(self, now=None) -> list:
        return []


class FakeGateway:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict]] = []

    def try_publish(self, topic: str, payload: dict) -> bool:
        self.published.append((topic, payload))
        return True


class Net:
    """Ordered in-memory links between fake nodes; one pump delivers messages."""

    def __init__(self) -> None:
        self.nodes: dict[str, "FakeNode"] = {}
        self.queues: dict[tuple[str, str], deque[bytes]] = {}
        self.max_depth: dict[tuple[str, str], int] = {}
        self.wake = trio.Event()

    def link(self, a: str, b: str) -> None:
        for src, dst in ((a, b), (b, a)):
            self.queues[(src, dst)] = deque()
        for src, dst in ((a, b), (b, a)):
            for fn in self.nodes[src].link_listeners:
                fn(dst, True)

    def unlink(self, a: str, b: str) -> None:
        for src, dst in ((a, b), (b, a)):
            self.queues.pop((src, dst), None)
            for fn in self.nodes[src].link_listeners:
                fn(dst, False)

    def send(self, src: str, dst: str, payload: bytes) -> bool:
        q = self.queues.get((src, dst))
        if q is None:
            return False
        q.append(payload)
        self.max_depth[(src, dst)] = max(self.max_depth.get((src, dst), 0), len(q))
        self.wake.set()
        return True

    async def pump(self) -> None:
        while True:
            busy = False
            for (src, dst), q in list(self.queues.items()):
                if q:
                    busy = True
                    payload = q.popleft()
                    node = self.nodes[dst]
                    node.services[payload[0]](src, payload[1:])
            if busy:
                await trio.sleep(0)
            else:
                self.wake = trio.Event()
                await self.wake.wait()


class FakeLinks:
    def __init__(self, net: Net, me: str) -> None:
        self.net, self.me, self.peers = net, me, {}
        self.closed: list[tuple[str, str]] = []

    def up_peers(self) -> list[str]:
        return [dst for (src, dst) in self.net.queues if src == self.me]

    def queue_depth(self, peer: str) -> int:
        return len(self.net.queues.get((self.me, peer), ()))

    async def close_link(self, peer: str, reason: str) -> None:
        self.closed.append((peer, reason))  # the in-memory link stays: sessions reopen on the next "up"


class FakeNode:
    def __init__(self, net: Net, key: KeyPair, role: str, roster: FakeRoster, data_dir: Path) -> None:
        self.key = key
        self.me = roster.member_by_node_id(key.node_id)
        assert self.me is not None and self.me.role == role
        self.roster, self.data_dir = roster, data_dir
        self.services: dict = {}
        self.link_listeners: list = []
        self.status_extras: dict = {}
        self.api_handlers: dict = {}
        self.gateway = FakeGateway()
        self.links = FakeLinks(net, key.node_id)
        self.net = net
        net.nodes[key.node_id] = self

    def send(self, peer: str, service: int, body: bytes) -> bool:
        return self.net.send(self.key.node_id, peer, bytes([service]) + body)

    async def api(self, name: str, args: dict | None = None) -> dict:
        return await self.api_handlers[name](args or {})


KEYS = [KeyPair.from_seed(bytes([i]) * 32) for i in (1, 2, 3)]
ROLES = ["hq", "hall", "hall"]


@pytest.fixture
async def commune(tmp_path, nursery):
    roster = FakeRoster([Member(i + 1, k.node_id, f"Site {i}", r) for i, (k, r) in enumerate(zip(KEYS, ROLES))])
    net = Net()
    nodes = []
    for i, (k, r) in enumerate(zip(KEYS, ROLES)):
        d = tmp_path / f"n{i}"
        d.mkdir()
        node = FakeNode(net, k, r, roster, d)
        node.sync = registered(SyncService(node))
        registered(StateApi(node, node.sync))  # as node/compose.py wires them (no LoRa here)
        nursery.start_soon(node.sync.run)
        nodes.append(node)
    nursery.start_soon(net.pump)
    return net, nodes


async def settle(nodes, what: str) -> None:
    """Hang guard: wait until every store has the same digest and wants no chunks."""
    with trio.move_on_after(HANG_GUARD_S):
        while True:
            states = [n.status_extras["sync"]() for n in nodes]
            if len({s["digest"] for s in states}) == 1 and all(s["pending_chunks"] == 0 for s in states):
                return
            await trio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}: {[{k: v for k, v in s.items() if k != 'origins'} for s in states]}")


async def test_changes_flow_through_the_driver_and_are_published(commune, tmp_path):
    net, (hq, hall1, hall2) = commune
    net.link(hq.key.node_id, hall1.key.node_id)
    net.link(hall1.key.node_id, hall2.key.node_id)  # hall2 hears HQ only through hall1
    mid = (await hq.api("meeting_create", {"title": "Họp"}))["id"]
    item = (await hq.api("agenda_add", {"meeting_id": mid, "title": "Mục 1"}))["id"]
    await hq.api("meeting_update", {"id": mid, "status": "started", "current_item": item})
    await settle([hq, hall1, hall2], "meeting everywhere")
    await hall2.api("checkin", {"meeting_id": mid, "present": 7})
    await hall2.api("checkin", {"meeting_id": mid, "member": "ông Ba"})
    await settle([hq, hall1, hall2], "check-ins at HQ")
    got = await hq.api("meeting", {"id": mid})
    assert got["meeting"]["status"] == "started" and got["meeting"]["current_item"] == item
    assert got["attendance"]["total"] == 8
    assert got["attendance"]["per_hall"] == [{"node": hall2.key.node_id, "site": "Site 2", "present": 8}]
    tables = {t for topic, p in hall2.gateway.published if topic == "state" for t in p["tables"]}
    assert {"meetings", "agenda_items"} <= tables
    assert all(p["type"] == "state_changed" for _, p in hall2.gateway.published)
    status = hall1.status_extras["sync"]()
    assert set(status["origins"]) == {hq.key.node_id, hall2.key.node_id}
    assert status["sessions"] == 2 and set(status["peers"]) == {hq.key.node_id, hall2.key.node_id}


async def test_document_chunks_wait_behind_a_short_link_queue_and_come_once(commune, tmp_path):
    net, (hq, hall1, hall2) = commune
    for h in (hall1, hall2):
        net.link(hq.key.node_id, h.key.node_id)
    net.link(hall1.key.node_id, hall2.key.node_id)
    mid = (await hq.api("meeting_create", {"title": "Họp"}))["id"]
    data = random.Random(1).randbytes(3 << 20)  # 12 chunks of 256 KiB
    path = tmp_path / "tai-lieu.pdf"
    path.write_bytes(data)
    doc = await hq.api("doc_add", {"meeting_id": mid, "path": str(path)})
    assert doc["size"] == len(data) and doc["chunks_total"] == 12
    await settle([hq, hall1, hall2], "document everywhere")
    for h in (hall1, hall2):
        listed = (await h.api("docs", {"meeting_id": mid}))["documents"]
        assert [(d["chunks_held"], d["chunks_total"]) for d in listed] == [(12, 12)]
        assert b"".join(h.sync.store.read_document(doc["id"])) == data
    # Each hall got each chunk once, whoever served it (chunk requests are claimed per node).
    assert [h.status_extras["sync"]()["chunks_received"] for h in (hall1, hall2)] == [12, 12]
    # Chunk pieces never piled up in a link's queue beyond the bulk allowance (plus live messages).
    assert max(net.max_depth.values()) <= BULK_QUEUE_MAX_MESSAGES + 4


async def test_link_cut_mid_transfer_is_picked_up_by_another_link(commune, tmp_path):
    net, (hq, hall1, hall2) = commune
    a, b, c = (n.key.node_id for n in (hq, hall1, hall2))
    net.link(a, b)
    net.link(a, c)
    mid = (await hq.api("meeting_create", {"title": "Họp"}))["id"]
    path = tmp_path / "d.bin"
    path.write_bytes(bytes(4 << 20))  # 16 identical chunks: held once
    doc = await hq.api("doc_add", {"meeting_id": mid, "path": str(path)})
    assert doc["chunks_total"] == 16
    await settle([hq, hall1, hall2], "zero document everywhere")
    path.write_bytes(random.Random(2).randbytes(4 << 20))
    doc = await hq.api("doc_add", {"meeting_id": mid, "path": str(path)})
    net.unlink(a, c)  # hall2 loses HQ at once; it reaches hall1 instead
    net.link(b, c)
    await settle([hq, hall1, hall2], "second document everywhere")
    held = {d["id"]: d["chunks_held"] for d in (await hall2.api("docs", {"meeting_id": mid}))["documents"]}
    assert held[doc["id"]] == 16


async def test_hostile_sync_bytes_close_only_that_session(commune):
    net, (hq, hall1, hall2) = commune
    net.link(hq.key.node_id, hall1.key.node_id)
    net.link(hq.key.node_id, hall2.key.node_id)
    await hq.api("meeting_create", {"title": "Họp"})
    await settle([hq, hall1, hall2], "meeting")
    hq.services[services.SYNC](hall1.key.node_id, b"\xff\x00garbage")
    with trio.fail_after(HANG_GUARD_S):
        while hall1.key.node_id in hq.sync.peers:
            await trio.sleep(0.01)
    assert hq.status_extras["sync"]()["protocol_violations"] == 1
    await trio.sleep(0)  # the close runs as its own task
    assert [peer for peer, _ in hq.links.closed] == [hall1.key.node_id]  # that link only, through its named method
    await hq.api("announce", {"text": "Vẫn đến điểm khác"})
    await settle([hq, hall2], "hall2 still in sync")


CASES = [  # (node index, api, args, status)
    (0, "meeting", {}, 400), (0, "meeting", {"id": 5}, 400), (0, "meeting", {"id": "nope"}, 404),
    (0, "meeting_create", {"title": ""}, 400), (0, "meeting_create", {"title": "x" * 501}, 400),
    (0, "meeting_update", {"id": "nope", "status": "started"}, 404),
    (0, "meeting_update", {"id": "M", "status": "paused"}, 400),
    (0, "meeting_update", {"id": "M", "current_item": "nope"}, 404),
    (1, "meeting_update", {"id": "M", "status": "started"}, 403),
    (0, "agenda_add", {"meeting_id": "M", "title": "t", "position": 0}, 400),
    (0, "agenda_add", {"meeting_id": "M", "title": "t", "position": True}, 400),
    (1, "agenda_add", {"meeting_id": "M", "title": "t"}, 403),
    (0, "agenda_update", {"id": "nope", "title": "t"}, 404), (0, "agenda_update", {"id": "nope"}, 400),
    (1, "doc_add", {"meeting_id": "M", "path": "FILE"}, 403), (0, "doc_add", {"meeting_id": "M"}, 400),
    (0, "doc_add", {"meeting_id": "M", "path": "/"}, 400), (0, "doc_add", {"meeting_id": "nope", "path": "FILE"}, 404),
    (0, "docs", {"meeting_id": "nope"}, 404), (0, "doc_readiness", {"meeting_id": "nope"}, 404),
    (1, "checkin", {"meeting_id": "M"}, 400), (1, "checkin", {"meeting_id": "M", "present": 1.5}, 400),
    (1, "checkin", {"meeting_id": "M", "present": "-3"}, 400),
    (1, "motion_open", {"meeting_id": "M", "title": "t"}, 403),
    (0, "motion_open", {"meeting_id": "M", "title": "t", "rule": "unanimous"}, 400),
    (1, "vote", {"motion_id": "nope", "choice": "yes"}, 404),
    (1, "vote", {"motion_id": "X", "choice": "yes", "count": 0}, 400),
    (1, "vote", {"motion_id": "X", "choice": "yes", "member": "a", "count": 2}, 400),
    (1, "motion_close", {"motion_id": "X"}, 403), (0, "motion_close", {"motion_id": "nope"}, 404),
    (1, "announce", {"text": "x"}, 403), (0, "announce", {"text": "x", "urgent": "maybe"}, 400),
    (0, "announce", {"text": "x" * 4001}, 400), (1, "feedback", {"text": " "}, 400),
    (1, "feedback", {"text": "t", "meeting_id": "nope"}, 404), (1, "feedback_reply", {"feedback_id": "F", "text": "t"}, 403),
    (0, "feedback_reply", {"feedback_id": "nope", "text": "t"}, 404),
    (1, "speak_request", {"meeting_id": "M", "state": "granted"}, 400),
    (0, "speak_queue", {"meeting_id": "nope"}, 404), (0, "state", {"format": "xml"}, 400),
]


async def test_api_errors_are_4xx_with_clear_codes(commune, tmp_path):
    net, (hq, hall1, hall2) = commune
    net.link(hq.key.node_id, hall1.key.node_id)
    mid = (await hq.api("meeting_create", {"title": "Họp"}))["id"]
    motion = (await hq.api("motion_open", {"meeting_id": mid, "title": "Biểu quyết"}))["id"]
    fb = (await hall1.api("feedback", {"text": "Ý kiến"}))["id"]
    await settle([hq, hall1], "motion at hall1")
    f = tmp_path / "f.txt"
    f.write_text("tài liệu")
    subst = {"M": mid, "X": motion, "F": fb, "FILE": str(f)}
    for idx, name, args, want in CASES:
        args = {k: subst.get(v, v) if isinstance(v, str) else v for k, v in args.items()}
        with pytest.raises(ApiError) as err:
            await (hq, hall1, hall2)[idx].api(name, args)
        assert err.value.status == want, (name, args, err.value.en)
        assert err.value.code and err.value.vi and err.value.en
    # Conflicts: a second tally for the same choice, voting or closing after the close.
    with pytest.raises(ApiError) as err:  # ballots count only within the hall's check-in
        await hall1.api("vote", {"motion_id": motion, "choice": "yes", "count": 3})
    assert err.value.status == 409 and err.value.code == "over_checkin"
    await hall1.api("checkin", {"meeting_id": mid, "present": 3})
    await hall1.api("vote", {"motion_id": motion, "choice": "yes", "count": 3})
    for name, args in (("vote", {"motion_id": motion, "choice": "yes", "count": 1}),):
        with pytest.raises(ApiError) as err:
            await hall1.api(name, args)
        assert err.value.status == 409
    await settle([hq, hall1], "ballot at HQ")
    closed = await hq.api("motion_close", {"motion_id": motion})
    assert (closed["yes"], closed["turnout"], closed["result"]) == (3, 3, "passed")
    for node, name in ((hq, "motion_close"), (hall1, "vote")):
        await settle([hq, hall1], "close at hall1")
        with pytest.raises(ApiError) as err:
            await node.api(name, {"motion_id": motion, "choice": "no"})
        assert err.value.status == 409


HOSTILE = [None, True, 0, -1, 2**70, 1.5, math.nan, "", " ", "x" * 5000, "../../etc", [], {}, ["a"], {"a": 1}]


async def test_hostile_argument_values_never_raise_anything_but_api_errors(commune, tmp_path):
    net, (hq, hall1, _) = commune
    mid = (await hq.api("meeting_create", {"title": "Họp"}))["id"]
    names = ["id", "title", "starts", "status", "current_item", "meeting_id", "position", "path", "name", "present",
             "member", "rule", "motion_id", "choice", "count", "text", "urgent", "feedback_id", "state", "format", "zalo"]
    for node in (hq, hall1):
        for api_name, handler in node.api_handlers.items():
            for key in names:
                for value in HOSTILE:
                    args = {"meeting_id": mid, "id": mid, key: value}
                    try:
                        result = await handler(args)
                    except ApiError as e:
                        assert 400 <= e.status < 500, (api_name, key, value, e.en)
                    else:
                        json.dumps(result)  # whatever passed is JSON-able


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b"]), st.none() | st.booleans() | st.integers() | st.floats()
                       | st.text(max_size=20) | st.lists(st.integers(), max_size=2)))
def test_argument_parsers_accept_or_raise_400(args):
    for parse in (lambda: state_args.arg_str(args, "a"), lambda: state_args.arg_int(args, "a", required=False),
                  lambda: state_args.arg_bool(args, "b"), lambda: state_args.arg_id(args, "a", required=False),
                  lambda: state_args.arg_str(args, "b", required=False, choices=("x", "y"))):
        try:
            value = parse()
        except ApiError as e:
            assert e.status == 400 and e.code == "bad_request"
        else:
            assert value is None or type(value) in (str, int, bool)
