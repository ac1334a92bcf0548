"""LoraService inside trio with a real data dir, a real roster and an emulated modem on a pty.

The node around it is a small stand-in offering only the hooks the plugin uses (services,
link_listeners, status_extras, api_handlers, links.up_peers, send, gateway)."""

from __future__ import annotations

import dataclasses
import os
import random
import stat
import time
from pathlib import Path

import pytest
import trio

from meshmeet.config import LoraSettings, NodeConfig
from meshmeet.membership.datadir import init_commune, load_membership
from meshmeet.membership.identity import KeyPair
from meshmeet.lora_io.emulator import EmulatedRak3172, RadioChannel, Topology
from meshmeet.node.lora_service import LoraService
from meshmeet.api.contract import ApiError
from meshmeet.wire import services

from conftest import registered


class Links:
    def __init__(self, peers: list[str]) -> None:
        self.peers = peers

    def up_peers(self) -> list[str]:
        return list(self.peers)


class LinkedAreMembers:
    """The roster as the link layer sees it: in a real node only members link, so the stand-in's
    named link peers count as hall members (seat 2); everything else is the real roster."""

    def __init__(self, roster, peers) -> None:
        self._roster, self._peers = roster, set(peers)

    def __getattr__(self, name):
        return getattr(self._roster, name)

    def member_by_node_id(self, node_id):
        if node_id in self._peers:
            return dataclasses.replace(self._roster.members()[0], short_id=2, role="hall", node_id=node_id)
        return self._roster.member_by_node_id(node_id)


class StubNode:
    def __init__(self, data_dir: Path, *, lora: LoraSettings | None, me=None, key=None, peers=()) -> None:
        self.key, roster, self.me = load_membership(data_dir)
        self.roster = LinkedAreMembers(roster, [*peers, "peer-a"])
        self.key = key or self.key
        self.me = me or self.me
        self.data_dir = data_dir
        self.cfg = dataclasses.replace(NodeConfig(), lora=lora)
        self.services, self.api_handlers, self.status_extras = {}, {}, {}
        self.link_listeners: list = []
        self.roster_listeners: list = []
        self.links = Links(list(peers))
        self.sent: list[tuple[str, int, bytes]] = []
        self.gateway = None

    def send(self, peer: str, service: int, body: bytes) -> bool:
        self.sent.append((peer, service, body))
        return True


@pytest.fixture
def hq_dir(tmp_path: Path) -> Path:
    init_commune(tmp_path / "hq", "Xã Thử", "UBND xã", time.time())
    return tmp_path / "hq"


def test_hq_makes_a_private_key_once_and_offers_it_on_link_up(hq_dir):
    async def main():
        node = StubNode(hq_dir, lora=None)
        svc = registered(LoraService(node))
        assert svc.status() == {"enabled": False, "key": "ok", "state": "off"}
        assert stat.S_IMODE(os.stat(hq_dir / "lora.key").st_mode) == 0o600
        first = (hq_dir / "lora.key").read_bytes()
        assert LoraService(StubNode(hq_dir, lora=None)).offer.to_bytes() == first  # kept, not remade
        node.link_listeners[0]("peer-a", True)
        assert node.sent == [("peer-a", services.LORA, first)]

    trio.run(main)


def test_hall_waits_for_the_key_takes_only_hq_offers_and_passes_them_on(hq_dir, tmp_path):
    async def main():
        hq = LoraService(StubNode(hq_dir, lora=None))
        hall_dir = tmp_path / "hall"
        hall_dir.mkdir()
        # The hall's data dir shares the roster; it is seat 2 (a hall) in this stand-in.
        for name in ("roster.bin", "node.key"):
            (hall_dir / name).write_bytes((hq_dir / name).read_bytes())
        os.chmod(hall_dir / "node.key", 0o600)
        base = StubNode(hall_dir, lora=LoraSettings(port="/dev/null"))
        me = dataclasses.replace(base.me, short_id=2, role="hall")
        node = StubNode(hall_dir, lora=LoraSettings(port="/dev/null"), me=me, peers=["a", "b"])
        hall = registered(LoraService(node))
        assert hall.status()["key"] == "missing" and hall.status()["state"] == "waiting_key"
        forged = dataclasses.replace(hq.offer, key=bytes(32)).to_bytes()
        node.services[services.LORA]("a", forged)
        assert hall.offer is None and not (hall_dir / "lora.key").exists()
        node.services[services.LORA]("a", hq.offer.to_bytes())
        assert hall.offer == hq.offer and (hall_dir / "lora.key").read_bytes() == hq.offer.to_bytes()
        assert node.sent == [("b", services.LORA, hq.offer.to_bytes())]  # onwards, not back to "a"
        node.services[services.LORA]("b", hq.offer.to_bytes())
        assert len(node.sent) == 1  # the same offer again is not passed on again

    trio.run(main)


async def test_modem_session_alert_state_and_unplug(hq_dir, pty_clock):
    async with trio.open_nursery() as n:
        channel = RadioChannel(Topology.chain(2), n, random.Random(1))
        modem, other = EmulatedRak3172(1, channel), EmulatedRak3172(2, channel)
        serve_scope = trio.CancelScope()

        async def serve(task_status=trio.TASK_STATUS_IGNORED):
            with serve_scope:
                await modem.serve(task_status=task_status)

        await n.start(serve)
        await n.start(other.serve)
        node = StubNode(hq_dir, lora=LoraSettings(port=modem.path, preset="fast", beacon_s=5.0))
        svc = registered(LoraService(node))
        n.start_soon(svc.run)
        while svc.state != "up":
            await trio.sleep(0.1)
        st = svc.status()
        assert st["airtime"]["budget_s_per_hour"] == 36.0 and st["links"] == []
        record = await node.api_handlers["lora_alert"]({"text": "Khẩn: thử"})
        assert record["direction"] == "sent" and record["missing"] == []  # the only member is HQ
        with pytest.raises(ApiError) as bad:
            await node.api_handlers["lora_send"]({"kind": "tally", "meeting": -1})
        assert bad.value.status == 400
        await trio.sleep(3)
        assert svc.status()["airtime"]["frames_sent"] >= 2  # beacon and alert left
        assert modem.p2p.sf == 7 and modem.p2p.freq_hz == 921_500_000
        mark = (hq_dir / "lora-state.json").read_text()
        assert '"reserved":' in mark

        serve_scope.cancel()  # the modem is unplugged
        while svc.state == "up":
            await trio.sleep(0.1)
        assert svc.status()["state"] in ("down", "starting", "error")
        n.cancel_scope.cancel()


def test_api_alert_refused_for_a_hall(hq_dir):
    async def main():
        base = StubNode(hq_dir, lora=None)
        me = dataclasses.replace(base.me, short_id=2, role="hall", backup=False)
        node = StubNode(hq_dir, lora=None, me=me, key=KeyPair.generate())
        registered(LoraService(node))
        with pytest.raises(ApiError) as refused:
            await node.api_handlers["lora_alert"]({"text": "x"})
        assert refused.value.status == 403

    trio.run(main)


class Gateway:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict]] = []

    async def publish(self, topic: str, payload: dict) -> None:
        self.published.append((topic, payload))


async def test_received_alert_is_kept_and_published_once(hq_dir, tmp_path, pty_clock):
    hall_dir = tmp_path / "hall"
    hall_dir.mkdir()
    for name in ("roster.bin", "node.key"):
        (hall_dir / name).write_bytes((hq_dir / name).read_bytes())
    os.chmod(hall_dir / "node.key", 0o600)
    async with trio.open_nursery() as n:
        channel = RadioChannel(Topology.chain(2), n, random.Random(2))
        modems = [EmulatedRak3172(i, channel) for i in (1, 2)]
        for m in modems:
            await n.start(m.serve)
        hq_node = StubNode(hq_dir, lora=LoraSettings(port=modems[0].path, preset="fast", beacon_s=5.0))
        hq = registered(LoraService(hq_node))
        base = StubNode(hall_dir, lora=None)
        hall_node = StubNode(hall_dir, lora=LoraSettings(port=modems[1].path, preset="fast", beacon_s=5.0),
                             me=dataclasses.replace(base.me, short_id=2, role="hall"), key=KeyPair.generate())
        hall_node.gateway = Gateway()
        hall = registered(LoraService(hall_node))
        hall_node.services[services.LORA]("hq", hq.offer.to_bytes())
        n.start_soon(hq.run)
        n.start_soon(hall.run)
        while hq.state != "up" or hall.state != "up":
            await trio.sleep(0.1)
        await hq_node.api_handlers["lora_alert"]({"text": "Khẩn: đê yếu"})
        while not hall_node.gateway.published:
            await trio.sleep(0.5)
        await trio.sleep(20)  # beacons keep running; nothing may publish the alert again
        alerts = [p for t, p in hall_node.gateway.published if t == "alerts"]
        assert len(alerts) == 1 and alerts[0]["text"] == "Khẩn: đê yếu" and alerts[0]["source_site"] == "UBND xã"
        assert [a["text"] for a in hall.status()["alerts"]] == ["Khẩn: đê yếu"]
        assert any(l["short_id"] == 1 and l["relays"] == 0 for l in hall.status()["links"])
        n.cancel_scope.cancel()
    saved = (hall_dir / "lora-alerts.json").read_text()
    assert "đê yếu" in saved
