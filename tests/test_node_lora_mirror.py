"""Issue 7 gaps, in trio with real data dirs, real SQLite stores and emulated modems on ptys:
urgent announcements over LoRa carry their sync id (so the hall shows them once), meeting state
is mirrored over LoRa only while no IP link is up, and LoRa links are control-only."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path

import pytest
import trio

from meshmeet.config import LoraSettings
from meshmeet.membership.datadir import init_commune
from meshmeet.membership.identity import KeyPair
from meshmeet.lora_io.emulator import EmulatedRak3172, RadioChannel, Topology
from meshmeet.lora.statewatch import short_ref
from meshmeet.node.lora_mirror import WATCH_S
from meshmeet.node.lora_service import LoraService
from meshmeet.meeting import meetings as m
from meshmeet.store.batch import decode_batch
from meshmeet.meeting.replica import open_store
from meshmeet.store.db import Store
from meshmeet.wire import services

from conftest import registered

from test_node_lora_service import Gateway, StubNode


class StubSync:
    """What LoraService is given of the SyncService (node/ports.py StateReader): reads of a real
    store under its lock."""

    def __init__(self, path: Path, key: KeyPair, roles: dict[str, str]) -> None:
        self.store = open_store(path, key, roles.get)
        self.lock = trio.Lock()

    async def read(self, query):
        async with self.lock:
            return query(self.store)

    def read_nowait(self, query):
        try:
            self.lock.acquire_nowait()
        except trio.WouldBlock:
            return None
        try:
            return query(self.store)
        finally:
            self.lock.release()


class RosterWithHall:
    """The real roster plus a hall seat (short id 2) for `key`, as a join would have added."""

    def __init__(self, roster, key: KeyPair) -> None:
        self._roster = roster
        hq = roster.members()[0]
        self.hall = dataclasses.replace(hq, short_id=2, node_id=key.node_id, public_key=key.public_key,
                                        site="Thôn 1", role="hall", backup=False)
        self.commune_id = roster.commune_id

    def members(self) -> list:
        return [*self._roster.members(), self.hall]

    def member_by_short_id(self, short_id: int):
        return self.hall if short_id == 2 else self._roster.member_by_short_id(short_id)

    def member_by_node_id(self, node_id: str):
        return self.hall if node_id == self.hall.node_id else self._roster.member_by_node_id(node_id)

    def revoked_short_ids(self) -> tuple[int, ...]:
        return self._roster.revoked_short_ids()


def sync_ip(src: Store, dst: Store) -> None:
    """What ordinary sync does when IP returns: dst takes every batch it lacks from src."""
    dst.apply([decode_batch(b.body, b.sig) for b in src.batches_after(dst.version_vector())])


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    hq_dir, hall_dir = tmp_path / "hq", tmp_path / "hall"
    init_commune(hq_dir, "Xã Thử", "UBND xã", time.time())
    hall_dir.mkdir()
    for name in ("roster.bin", "node.key"):
        (hall_dir / name).write_bytes((hq_dir / name).read_bytes())
    os.chmod(hall_dir / "node.key", 0o600)
    return hq_dir, hall_dir


async def until(pred, what: str, limit_s: float = 600.0) -> None:
    """Wait on the mock clock (a hang guard, not a timing assertion)."""
    with trio.fail_after(limit_s):
        while not pred():
            await trio.sleep(0.5)


async def test_alert_ids_state_mirror_and_ip_return(dirs, pty_clock):
    hq_dir, hall_dir = dirs
    async with trio.open_nursery() as n:
        channel = RadioChannel(Topology.chain(2), n, random.Random(3))
        modems = [EmulatedRak3172(i, channel) for i in (1, 2)]
        for modem in modems:
            await n.start(modem.serve)
        settings = [LoraSettings(port=modem.path, preset="fast", beacon_s=5.0) for modem in modems]
        hq_node = StubNode(hq_dir, lora=settings[0], peers=["ip-peer"])
        hall_key = KeyPair.generate()
        base = StubNode(hall_dir, lora=None)
        hall_node = StubNode(hall_dir, lora=settings[1], me=dataclasses.replace(base.me, short_id=2, role="hall"),
                             key=hall_key, peers=["ip-peer"])
        hq_node.roster = RosterWithHall(hq_node.roster, hall_key)
        hall_node.roster = RosterWithHall(hall_node.roster, hall_key)
        hall_node.me = hall_node.roster.hall
        roles = {hq_node.key.node_id: "hq", hall_key.node_id: "hall"}
        hq_sync = StubSync(hq_dir / "state.db", hq_node.key, roles)
        hall_sync = StubSync(hall_dir / "state.db", hall_key, roles)
        hq_node.gateway, hall_node.gateway = Gateway(), Gateway()
        hq, hall = registered(LoraService(hq_node, state=hq_sync)), registered(LoraService(hall_node, state=hall_sync))
        hall_node.services[services.LORA]("ip-peer", hq.offer.to_bytes())

        # Before the outage: a started meeting with a current agenda item reaches the hall by sync.
        hq_store = hq_sync.store
        mid = m.create_meeting(hq_store, "Họp dân tháng 11")
        item = m.add_agenda_item(hq_store, mid, "Đê điều")
        hq_store.write("meetings", mid, {"status": "started"})
        hq_store.write("agenda_items", item, {"status": "current"})
        sync_ip(hq_store, hall_sync.store)

        n.start_soon(hq.run)
        n.start_soon(hall.run)
        await until(lambda: hq.state == "up" and hall.state == "up", "both modems up")
        # HQ's first beacon can go out before the hall's modem listens: the next one comes 5 s later.
        await until(lambda: any(link["short_id"] == 1 for link in hall.status()["links"]), "the hall hears HQ")
        await trio.sleep(3 * WATCH_S)  # IP is up: the state is only noted, nothing goes over LoRa
        assert hq.mirror.mirrored == 0 and hall.mirror.mirrored == 0
        assert all(link["control_only"] is True and link["transport"] == "lora" for link in hall.status()["links"])

        # IP goes away. HQ opens a motion; the hall checks in and votes.
        hq_node.links.peers.clear()
        hall_node.links.peers.clear()
        motion = m.open_motion(hq_store, mid, "Kè đê đoạn 3")
        sync_ip(hq_store, hall_sync.store)  # (the hall saw the motion earlier; its own rows are the point)
        m.checkin(hall_sync.store, mid, 41)
        m.vote(hall_sync.store, motion, "yes", 30)
        m.vote(hall_sync.store, motion, "no", 5)

        def got(svc: LoraService, kind: str) -> list[dict]:
            return [e for e in svc.status()["received"] if e["kind"] == kind]

        await until(lambda: got(hall, "control") and got(hq, "tally") and got(hq, "attendance"), "state over LoRa")
        await trio.sleep(3 * WATCH_S)
        controls = got(hall, "control")
        # Only what changed since IP left: the motion, not the meeting start or the agenda item.
        assert [(c["action"], c["meeting"], c["item"]) for c in controls] == [("vote_open", short_ref(mid), short_ref(motion))]
        assert controls[0]["meeting_id"] == mid and controls[0]["motion_id"] == motion
        tally = got(hq, "tally")
        assert len(tally) == 1 and (tally[0]["yes"], tally[0]["no"], tally[0]["abstain"]) == (30, 5, 0)
        assert tally[0]["motion_id"] == motion and tally[0]["site"] == "Thôn 1"
        attendance = got(hq, "attendance")
        assert len(attendance) == 1 and attendance[0]["present"] == 41 and attendance[0]["meeting_id"] == mid

        # An urgent announcement with no IP: state_api stores it, then asks lora_alert with the text only.
        aid = m.announce(hq_store, "Khẩn: nước lên, sơ tán", urgent=True)
        sent = await hq_node.api_handlers["lora_alert"]({"text": "Khẩn: nước lên, sơ tán"})
        assert sent["announcement_id"] == aid
        await until(lambda: hall.received_alert_ids, "the alert reaches the hall")
        assert hall.received_alert_ids == [aid] and hall.status()["received_alert_ids"] == [aid]
        shown = [p for t, p in hall_node.gateway.published if t == "alerts"]
        assert len(shown) == 1 and shown[0]["announcement_id"] == aid
        assert hall_sync.store.get("announcements", aid) is None  # the hall wrote nothing

        # IP returns: sync brings the announcement itself; the id says it was already on screen.
        sync_ip(hq_store, hall_sync.store)
        assert hall_sync.store.get("announcements", aid)["text"] == "Khẩn: nước lên, sơ tán"
        assert aid in hall.received_alert_ids

        # An alert whose announcement sync brought first is recorded, not shown again.
        aid2 = m.announce(hq_store, "Khẩn: đường ngập", urgent=True)
        sync_ip(hq_store, hall_sync.store)
        await hq_node.api_handlers["lora_alert"]({"text": "Khẩn: đường ngập", "announcement_id": aid2})
        await until(lambda: aid2 in hall.received_alert_ids, "the second alert reaches the hall")
        await trio.sleep(2)
        assert [p["text"] for t, p in hall_node.gateway.published if t == "alerts"] == ["Khẩn: nước lên, sơ tán"]

        # IP is back: further changes go by sync only.
        hq_node.links.peers.append("ip-peer")
        hall_node.links.peers.append("ip-peer")
        before = (hq.mirror.mirrored, hall.mirror.mirrored)
        m.close_motion(hq_store, motion)
        m.checkin(hall_sync.store, mid, 43)
        await trio.sleep(4 * WATCH_S)
        assert (hq.mirror.mirrored, hall.mirror.mirrored) == before
        n.cancel_scope.cancel()
    for sync in (hq_sync, hall_sync):
        sync.store.close()
