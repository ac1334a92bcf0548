"""The commune LoRa key after a revocation (node/lora_key.py with a stand-in node): HQ rotates to a
key that names the revoked seats, and a hall that has not heard of the revocation yet still never
hands that key to the revoked node, on link-up or when passing it on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshmeet.membership.identity import KeyPair, verify
from meshmeet.lora.keyshare import accept_offer, make_offer
from meshmeet.node.lora_key import CommuneLoraKey

COMMUNE = bytes(range(16))
HQ, HALL, OTHER, REVOKED = (KeyPair.from_seed(bytes([i]) * 32) for i in (1, 2, 3, 4))


@dataclass(frozen=True)
class M:
    short_id: int
    role: str
    public_key: bytes
    node_id: str


MEMBERS = {1: M(1, "hq", HQ.public_key, "hq"), 2: M(2, "hall", HALL.public_key, "hall"),
           3: M(3, "hall", OTHER.public_key, "other"), 4: M(4, "hall", REVOKED.public_key, "revoked")}


@dataclass
class Roster:
    revoked: set[int] = field(default_factory=set)
    commune_id: bytes = COMMUNE

    def member_by_short_id(self, sid):
        return None if sid in self.revoked else MEMBERS.get(sid)

    def member_by_node_id(self, nid):
        return next((m for m in MEMBERS.values() if m.node_id == nid and m.short_id not in self.revoked), None)

    def revoked_short_ids(self):
        return tuple(sorted(self.revoked))


class Links:
    def __init__(self, peers):
        self.peers = peers

    def up_peers(self):
        return list(self.peers)


class Node:
    def __init__(self, tmp: Path, me: M, key: KeyPair, peers: list[str]) -> None:
        self.data_dir, self.me, self.key, self.roster = tmp, me, key, Roster()
        self.links = Links(peers)
        self.sent: list[tuple[str, bytes]] = []

    def send(self, peer, service, body):
        self.sent.append((peer, body))
        return True


def test_hq_rotates_on_revocation_and_never_sends_to_the_revoked(tmp_path):
    hq = Node(tmp_path, MEMBERS[1], HQ, ["hall", "revoked"])
    got = []
    key = CommuneLoraKey(hq, on_new_key=got.append)
    first = key.offer
    assert first is not None and first.excluded == ()
    key.on_roster([])  # nothing revoked: no new key
    assert key.offer == first and got == []
    hq.roster.revoked.add(4)
    key.on_roster([])
    assert key.offer.rank > first.rank and key.offer.excluded == (4,) and got == [key.offer]
    assert [p for p, _ in hq.sent] == ["hall"]  # the revoked node's link may still be "up": skipped
    hq.sent.clear()
    key.on_link_change("revoked", True)
    assert hq.sent == []
    again = CommuneLoraKey(hq, on_new_key=got.append)  # a restart keeps it (no second rotation)
    assert again.offer == key.offer


def test_a_hall_that_has_not_heard_of_the_revocation_still_never_passes_the_new_key_on(tmp_path):
    hall = Node(tmp_path, MEMBERS[2], HALL, ["hq", "other", "revoked"])  # its roster: seat 4 still a member
    key = CommuneLoraKey(hall, on_new_key=lambda o: None)
    assert key.offer is None
    offer = make_offer(HQ, COMMUNE, 1, 100, excluded=[4])
    key.on_offer("hq", offer.to_bytes())
    assert key.offer == offer
    assert sorted(p for p, _ in hall.sent) == ["other"]
    hall.sent.clear()
    key.on_link_change("revoked", True)
    key.on_link_change("other", True)
    assert [p for p, _ in hall.sent] == ["other"]
    assert accept_offer((tmp_path / "lora.key").read_bytes(), COMMUNE, hall.roster.member_by_short_id, verify) == offer
