"""The composition root registers what every service provides in one place, and refuses a clash.

A real node is assembled from a real data dir (made by `meshmeet init`) inside trio, as `Node.run`
does. Each service states what it provides (`provides()`, a `node.provides.Provides`);
`compose.register` puts them on the node's dispatch tables in start order and refuses a second
claim on a service byte, a mesh-port first byte, an API name, a status key or a browser topic.
The tables it builds are pinned here to what the services registered by hand before (so the
move changed nothing a peer, a browser or the CLI can see).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from meshmeet.node.node import Node, load_config
from meshmeet.wire import services

from nodeproc import meshmeet

TEST_HOOKS_ENV = "MESHMEET_TEST_HOOKS"


@pytest.fixture(scope="module")
def hq_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("compose") / "hq"
    meshmeet("init", "--data-dir", str(d), "--commune", "Xã Thử", "--site", "UBND xã")
    return d


def _in_trio(fn):
    """Run fn() inside trio (services read trio's clock when they are built), return its value."""
    async def main():
        return fn()
    return trio.run(main)


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", repr(fn))


# What the services registered by hand in their constructors before the change (read off a node
# assembled on main, without MESHMEET_TEST_HOOKS and without a Zalo setup). Order matters where
# it is kept: link listeners run in this order, and status keys appear in it.
SERVICE_BYTES = {services.ROSTER, services.SYNC, services.TREE, services.MEDIA, services.LORA, services.CERT,
                 services.DATAGRAM, services.RECOVERY, services.CAPABILITIES, services.CLOCK}
API_NAMES = {
    "agenda_add", "agenda_update", "announce", "announcements", "briefing", "checkin", "citizen_board",
    "citizen_inbox", "citizen_lookup", "citizen_submit", "citizen_submit_page", "citizen_wall", "doc", "doc_add",
    "doc_chunk", "doc_readiness", "docs", "feedback", "feedback_hide", "feedback_list", "feedback_reply", "floor",
    "ingest", "lora_alert", "lora_send", "meeting", "meeting_create", "meeting_update", "meetings",
    "motion_close", "motion_open", "recovery_deliver", "recovery_release", "recovery_status", "release_publish",
    "release_versions", "roster", "slide_page", "slide_show", "slide_state", "speak_queue", "speak_request",
    "state", "status", "vote", "webapp_info", "zalo_status"}
STATUS_KEYS = ["tree", "sync", "disk", "peer_versions", "media", "ingest", "lora", "webapp", "recovery", "slides",
               "citizens", "zalo", "clock", "release"]
LINK_LISTENERS = ["TreeService._on_link_change", "SyncInbox.link_changed", "CapabilityService._on_link_change",
                  "MediaService._on_link_change", "DatagramService._on_link_change", "CommuneLoraKey.on_link_change",
                  "WebappService._on_link", "CertRevocation.on_link", "ClockService._on_link_change"]
ROSTER_LISTENERS = ["CommuneLoraKey.on_roster", "CertRevocation.on_roster"]
WEB_SETUPS = ["node_media_setup.<locals>.setup", "make_setup.<locals>.setup", "slides_web_setup.<locals>.setup",
              "make_page_setup.<locals>.setup"]
TOPICS = {"media_up": "IngestService._from_browsers", "media_stats": "MediaService._from_hub_stats"}
FIRST_BYTES = {0x4A: "Node._serve_join", 0x52: "RecoveryService._serve_ask"}


def test_the_assembled_node_has_the_tables_the_services_registered_by_hand(hq_dir: Path, monkeypatch) -> None:
    monkeypatch.delenv(TEST_HOOKS_ENV, raising=False)
    cfg = dataclasses.replace(load_config(hq_dir), mdns=False)  # "mdns" in status is the node's own

    def assemble():
        node = Node(hq_dir, cfg)
        return node, node._assemble(node)

    node, parts = _in_trio(assemble)
    assert [type(p).__name__ for p in parts] == [
        "TreeService", "SyncService", "CapabilityService", "MediaService", "IngestService", "LoraService",
        "WebappService", "RecoveryService", "SlidesService", "CitizensService", "ZaloService", "ClockService",
        "ReleaseService"]
    assert set(node.services) == SERVICE_BYTES
    assert set(node.api_handlers) == API_NAMES
    assert list(node.status_extras) == STATUS_KEYS
    assert [_name(f) for f in node.link_listeners] == LINK_LISTENERS
    assert [_name(f) for f in node.roster_listeners] == ROSTER_LISTENERS
    assert [_name(f) for f in node.web_setups] == WEB_SETUPS
    assert {k: _name(v) for k, v in node.inbound_handlers.items()} == TOPICS
    assert {k: _name(v) for k, v in node.links.first_byte_handlers.items()} == FIRST_BYTES


class _Impostor:
    """A service that claims what another already provides."""

    def __init__(self, **claims) -> None:
        self.claims = claims

    def provides(self):
        from meshmeet.node.provides import Provides
        return Provides(**self.claims)


async def _handler(*args) -> dict:
    return {}


@pytest.mark.parametrize("claim, owner, what", [
    ({"services": {services.SYNC: _handler}}, "SyncService", "service byte 0x20"),
    ({"services": {services.ROSTER: _handler}}, "Node", "service byte 0x10"),
    ({"first_bytes": {0x52: _handler}}, "RecoveryService", "first byte 0x52"),
    ({"first_bytes": {0x4A: _handler}}, "Node", "first byte 0x4a"),
    ({"apis": {"vote": _handler}}, "StateApi", "API 'vote'"),
    ({"apis": {"status": _handler}}, "Node", "API 'status'"),
    ({"status": {"media": dict}}, "MediaService", "status key 'media'"),
    ({"topics": {"media_stats": _handler}}, "MediaService", "topic 'media_stats'"),
])
def test_a_second_claim_is_refused_at_assembly_naming_both(hq_dir: Path, claim, owner: str, what: str) -> None:
    from meshmeet.node.compose import build, register
    from meshmeet.node.provides import RegistrationClash

    def attempt():
        node = Node(hq_dir, load_config(hq_dir))
        _, providers = build(node)
        providers.insert(3, _Impostor(**claim))  # in the middle: a later claim is refused as well as an earlier one
        with pytest.raises(RegistrationClash) as caught:
            register(node, providers)
        return str(caught.value)

    message = _in_trio(attempt)
    assert what in message and owner in message and "_Impostor" in message, message


def test_a_front_needs_a_topic_someone_provides_and_only_one_front(hq_dir: Path) -> None:
    from meshmeet.node.compose import build, register
    from meshmeet.node.provides import RegistrationClash

    def attempt(claim):
        node = Node(hq_dir, load_config(hq_dir))
        _, providers = build(node)
        with pytest.raises(RegistrationClash) as caught:
            register(node, [*providers, _Impostor(**claim)])
        return str(caught.value)

    nobody = _in_trio(lambda: attempt({"fronts": {"no_such_topic": _handler}}))
    assert "topic 'no_such_topic'" in nobody and "no service provides it" in nobody, nobody
    twice = _in_trio(lambda: attempt({"fronts": {"media_up": _handler}}))
    assert "IngestService" in twice and "_Impostor" in twice, twice


def test_one_service_cannot_claim_the_same_thing_twice() -> None:
    from meshmeet.node.provides import Provides, RegistrationClash

    with pytest.raises(RegistrationClash, match="API 'floor'"):
        Provides(apis={"floor": _handler}) + Provides(apis={"floor": _handler})
    both = Provides(apis={"a": _handler}, link_listeners=(_handler,)) + Provides(apis={"b": _handler},
                                                                               link_listeners=(dict,))
    assert set(both.apis) == {"a", "b"} and both.link_listeners == (_handler, dict)
