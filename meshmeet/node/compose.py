"""The composition root: which services a node runs, what each is given and provides, and the order.

`build(node)` constructs every service once, in one visible place, handing each what it needs as
constructor arguments (the small interfaces of ports.py); no service looks another up. Each part
of the node states what it provides in one value, `provides()` -> `Provides` (node/provides.py):
service bytes, mesh-port first bytes, API names, status keys, link and roster listeners, web
gateway setups, browser topics (and fronts on another's topic). `assemble(node)` registers them
all on the node's dispatch tables through `register`, the node's own first and then in start
order, and refuses a clash (two parts claiming one service byte, first byte, API name, status key
or topic) before the node starts; no service writes those tables itself. Node.run starts the
returned services in order, then the mesh listener, then the web gateway.
This module must never hold state or start anything itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..api.state_api import StateApi
from .clock_service import ClockService
from .capability_service import CapabilityService
from .ingest_service import IngestService
from ..slides.service import SlidesService
from .citizens_service import CitizensService
from .lora_service import LoraService
from .media_service import MediaService
from ..media.floor import FEATURE as FLOOR_FEATURE
from ..media.voices import FEATURE as VOICES_FEATURE
from .provides import Provider, register
from .recovery_service import RecoveryService
from .release_service import ReleaseService
from .sync_service import SyncService
from .tree_service import TreeService
from .webapp_service import WebappService
from .zalo_service import ZaloService

if TYPE_CHECKING:
    from .node import Node


class Service(Provider, Protocol):
    """A part of the node: constructed by `build`, its `provides()` registered by `assemble`, its
    `run` started in the node's nursery and cancelled at shutdown."""

    async def run(self) -> None: ...


def build(node: "Node") -> tuple[list[Service], list[Provider]]:
    """The node's services in start order, and every part to register (the node, the services and
    the handler-only StateApi) in registration order."""
    tree = TreeService(node)                                # needs: links
    sync = SyncService(node, tree=tree)                     # needs: links, roster, tree children
    caps = CapabilityService(node, sync=sync)               # needs: links; tells sync each peer's batch formats
    media = MediaService(node, tree=tree, state=sync,       # needs: links, tree, store reads, which peers know voices
                         knows_voices=caps.names(VOICES_FEATURE), signs_beacons=caps.names(FLOOR_FEATURE))
    ingest = IngestService(node, media=media)               # needs: media's way in, taps; fronts "media_up"
    lora = LoraService(node, state=sync)                    # needs: links, roster, store reads
    state_api = StateApi(node, sync, lora_alert=lora.api_alert)  # handlers only: no task of its own
    webapp = WebappService(node, tree=tree)                 # needs: links, roster, tree parent
    recovery = RecoveryService(node)                        # needs: links, roster, node key
    slides = SlidesService(node, sync=sync, lora=lora)      # needs: store writes (HQ's turns), LoRa SLIDE listeners
    citizens = CitizensService(node, sync=sync)             # needs: store writes, roster (HQ keys)
    zalo = ZaloService(node, sync=sync)                     # needs: store reads and writes, roster
    clock = ClockService(node)                              # needs: links (status["clock"] for the doctor)
    release = ReleaseService(node, sync=sync)               # needs: links, roster, the store (releases are documents)
    return ([tree, sync, caps, media, ingest, lora, webapp, recovery, slides, citizens, zalo, clock, release],
            [node, tree, sync, caps, media, ingest, lora, state_api, webapp, recovery, slides, citizens, zalo, clock,
             release])


def assemble(node: "Node") -> list[Service]:
    """Build the node's services, register what each provides (see docs/architecture.md, "Services"),
    and return them in start order. A clash raises node.provides.RegistrationClash."""
    parts, providers = build(node)
    register(node, providers)
    return parts
