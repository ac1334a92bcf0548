"""Tells each link peer what this node accepts, remembers what each peer accepts (service 0x90).

On every link up it sends this node's Capabilities (meshmeet/wire/capabilities.py); until the
peer's arrive, and forever for a peer of a release without them, the peer is taken to accept
capabilities.LEGACY. Other services ask `accepts(peer, name, version)` before sending a format
newer than LEGACY; the sync service's sessions get the peer's batch formats here. Status shows
each peer's software version (`peers`), and a link's record carries it for the network map.
This module must never close a link over a capabilities message (a bad one is logged and the
peer stays LEGACY) and never send anything but its own capabilities.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import trio

from .. import __version__
from ..media import chunk as media_chunk
from ..media.floor import FEATURE as FLOOR_FEATURE
from ..media.voices import FEATURE as VOICES_FEATURE
from ..lora.messages import Kind as LoraKind
from ..store.batch import BATCH_VERSION, BATCH_VERSION_V2
from ..sync.messages import PROTOCOL_VERSION as SYNC_PROTOCOL_VERSION
from ..sync.swarm import FEATURE as SWARM_FEATURE
from ..store.schema import LATEST_VERSION as SCHEMA_VERSION
from ..wire import services
from ..wire.capabilities import LEGACY, Capabilities, CapabilityError, decode, encode
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node
    from .sync_service import SyncService

log = logging.getLogger(__name__)

FEATURES = frozenset({"release/1", "node_versions", VOICES_FEATURE, SWARM_FEATURE, FLOOR_FEATURE})


def my_capabilities() -> Capabilities:
    media_kinds = {getattr(media_chunk, n) for n in dir(media_chunk) if n.startswith("KIND_")}
    return Capabilities(
        software=__version__,
        formats={"link": frozenset({1}), "sync": frozenset({SYNC_PROTOCOL_VERSION}),
                 "batch": frozenset({BATCH_VERSION_V2, BATCH_VERSION}),
                 "schema": frozenset(range(1, SCHEMA_VERSION + 1)), "media": frozenset(media_kinds),
                 "datagram": frozenset({1}), "lora": frozenset(int(k) for k in LoraKind)},
        features=FEATURES,
    )


class CapabilityService:
    def __init__(self, node: "Node", sync: "SyncService | None" = None) -> None:
        self.node = node
        self.sync = sync
        self.mine = my_capabilities()
        self._encoded = encode(self.mine)
        self.peers: dict[str, Capabilities] = {}

    def provides(self) -> Provides:
        return Provides(services={services.CAPABILITIES: self._on_message}, link_listeners=(self._on_link_change,),
                        status={"peer_versions": self.status})

    def of(self, peer: str) -> Capabilities:
        return self.peers.get(peer, LEGACY)

    def names(self, feature: str) -> Callable[[str], bool]:
        """A predicate: the peer's capabilities name `feature` (a peer not heard from yet: no)."""
        return lambda peer: feature in self.of(peer).features

    def accepts(self, peer: str, name: str, version: int) -> bool:
        return self.of(peer).accepts(name, version)

    def status(self) -> dict[str, dict]:
        return {peer: {"software": c.software, "features": sorted(c.features)} for peer, c in self.peers.items()}

    def _on_link_change(self, peer: str, up: bool) -> None:
        self.peers.pop(peer, None)
        if up:
            self.node.send(peer, services.CAPABILITIES, self._encoded)

    def _on_message(self, peer: str, body: bytes) -> None:
        try:
            caps = decode(body)
        except CapabilityError as e:
            log.warning("capabilities from %s ignored (%s): the peer is treated as %s", peer, e, LEGACY.software)
            return
        self.peers[peer] = caps
        log.info("peer %s runs meshmeet %s", peer, caps.software)
        if self.sync is not None:
            self.sync.peer_formats_changed(peer, caps.formats.get("batch", frozenset()), trio.current_time(),
                                           swarm=SWARM_FEATURE in caps.features)

    async def run(self) -> None:
        return None
