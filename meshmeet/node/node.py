"""The node process: one per site. Wires membership, links, discovery and the web gateway together.

Node owns the trio nursery in which every part runs, dispatches link messages to services by
their first byte, answers join requests, replicates the roster, and serves `/api/status`. The
services themselves are built by the composition root, compose.py, and started here in its order.
This module must never parse wire formats itself (the sans-IO cores do) and never import
aiohttp (the gateway is reached only through meshmeet.web.gateway_lifecycle and its bridge).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from pathlib import Path
from typing import Callable

import trio

from .. import config as config_mod
from ..config import NodeConfig
from ..membership.datadir import DataDir, load_membership, load_roster, save_roster
from .runfile import RUN_FILE, read_run_file
from ..store.diskfull import DiskFull, is_disk_full
from ..membership.join import JOIN_MAGIC, JoinAccepted, JoinServer
from ..membership.revocation import revocations_in, revoked_node_ids
from ..membership.roster import Entry, RosterError, RosterGossip
from ..api.contract import ApiCall, ApiError, dispatch_table
from ..web.gateway_lifecycle import WebLimits, open_web_gateway
from ..wire import services
from .discovery import Discovery, MdnsDialer, Sighting, Withdrawn
from .compose import Service, assemble
from .provides import (ApiHandler, InboundHandler, LinkListener, Provides, RosterListener, ServiceHandler, StatusFn,
                       WebSetup)
from .link import RECEIVE_BYTES
from .links import LinkManager, MeshLimits
from .sightings import Sightings

log = logging.getLogger(__name__)

ROSTER_POLL_S = 2.0
JOIN_IO_TIMEOUT_S = 30.0


class Node:
    """A running site: call `run()` inside trio; everything stops when it is cancelled."""

    def __init__(self, data_dir: Path, cfg: NodeConfig, assemble: Callable[["Node"], list[Service]] = assemble) -> None:
        self.data_dir = Path(data_dir)
        self.cfg = cfg
        self.key, self.roster, self.me = load_membership(self.data_dir)
        self.gossip = RosterGossip(self.roster)
        self.links = LinkManager(
            me=self.key,
            my_short_id=self.me.short_id,
            commune_id=self.roster.commune_id,
            lookup=self._lookup,
            site_of=self._site_of,
            on_message=self._on_message,
            on_link_change=self._on_link_change,
            keepalive_s=cfg.keepalive_s,
            limits=mesh_limits(cfg),
        )
        # The dispatch tables: filled once, by node/provides.py's `register` (called by compose.assemble)
        # from what the node itself and each service provide; nothing else writes them.
        self.services: dict[int, ServiceHandler] = {}  # link messages, by service byte
        self.api_handlers: dict[str, ApiHandler] = {}  # /api/NAME
        self.link_listeners: list[LinkListener] = []  # fn(peer, up), after the node's own roster gossip
        self.status_extras: dict[str, StatusFn] = {}  # status()[key]
        self.http_url: str | None = None
        self.mesh_port: int | None = None
        self.started_at = time.time()
        self._roster_mtime = self._roster_file_mtime()
        self.gateway = None
        self._assemble = assemble
        self.parts: list[Service] = []  # built by compose.assemble when the node runs, in start order
        self.web_setups: list[WebSetup] = []  # app_setup(app, ctx) functions from meshmeet.web, run on the web thread
        self.inbound_handlers: dict[str, InboundHandler] = {}  # browser -> node, by topic
        self.roster_listeners: list[RosterListener] = []  # fn(new entries) after the roster grew
        self._sightings = Sightings()  # mDNS dial targets (used when mDNS runs)

    def provides(self) -> Provides:
        """What the node itself provides: roster gossip (service 0x10), joins on the mesh port (first byte
        "J"), the `status` API, and status["mdns"] when mDNS runs."""
        return Provides(services={services.ROSTER: self._on_roster}, first_bytes={JOIN_MAGIC[0]: self._serve_join},
                        apis={"status": self._api_status},
                        status={"mdns": self._sightings.status} if self.cfg.mdns else {})

    # ----- lookups for the link layer ---------------------------------------------------------

    def _lookup(self, short_id: int) -> bytes | None:
        member = self.roster.member_by_short_id(short_id)
        return None if member is None or member.short_id == self.me.short_id else member.public_key

    def _site_of(self, node_id: str) -> str:
        member = self.roster.member_by_node_id(node_id)
        return member.site if member else ""

    # ----- running ----------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.cfg
        soft, hard = raise_open_file_limit()
        log.info("open-file limit %d (hard %d)", soft, hard)
        async with trio.open_nursery() as nursery:
            self.parts = self._assemble(self)
            for part in self.parts:  # start order: compose.assemble's
                nursery.start_soon(part.run)
            self.mesh_port = await nursery.start(self.links.run, cfg.listen.host, cfg.listen.port)
            async with open_web_gateway(
                nursery,
                host=cfg.http.host,
                port=cfg.http.port,
                api=_disk_full_is_507(dispatch_table(self.api_handlers)),
                app_setup=list(self.web_setups),
                limits=web_limits(cfg),
            ) as gateway:
                self.gateway = gateway
                self.http_url = gateway.url
                nursery.start_soon(self._pump_inbound, gateway)
                self._write_run_file()
                try:
                    for peer in cfg.peers:
                        self.links.add_target(peer.host, peer.port)
                    if cfg.mdns:
                        nursery.start_soon(self._discover, nursery)
                    nursery.start_soon(self._watch_roster_file)
                    log.info(
                        "node %s (%s, %s) up: mesh port %d, web %s",
                        self.key.node_id, self.me.site, self.me.role, self.mesh_port, self.http_url,
                    )
                    task_status.started(self)
                    await trio.sleep_forever()
                finally:
                    self._remove_run_file()

    async def _pump_inbound(self, gateway) -> None:
        """Messages browsers sent (through the bridge), to the service that owns their topic."""
        async for topic, payload in gateway.inbound:
            handler = self.inbound_handlers.get(topic)
            if handler is None:
                log.debug("browser message on unknown topic %s", topic)
                continue
            try:
                await handler(payload)
            except Exception:  # one bad browser message must not stop the pump
                log.exception("handler for topic %s failed", topic)

    async def _discover(self, nursery: trio.Nursery) -> None:
        """Publish this node on mDNS and dial what it sees, within the bounds of node/sightings.py
        (configured peers are dialled by the link manager, unaffected)."""
        send, receive = trio.open_memory_channel[Sighting | Withdrawn](256)
        discovery = Discovery(
            commune_id=self.roster.commune_id,
            node_id=self.key.node_id,
            port=self.mesh_port or 0,
            interfaces=self.cfg.mdns_interfaces,
            sightings=send,
            withdrawals=True,
        )
        dialer = MdnsDialer(
            self._sightings,
            dial=self.links.dial_once,  # one dial and its link; the sightings table paces redials
            is_member=lambda node_id: self.roster.member_by_node_id(node_id) is not None,
            is_linked=lambda node_id: node_id in self.links.up_peers(),
            resolve=discovery.resolve,
        )
        nursery.start_soon(discovery.run)
        await dialer.run(receive)

    # ----- messages ---------------------------------------------------------------------------

    def _on_message(self, peer: str, payload: bytes) -> None:
        if not payload:
            return
        handler = self.services.get(payload[0])
        if handler is None:
            log.debug("message for unknown service 0x%02x from %s", payload[0], peer)
            return
        handler(peer, payload[1:])

    def _on_link_change(self, peer: str, up: bool) -> None:
        if up:
            self.links.send_nowait(peer, bytes([services.ROSTER]) + self.gossip.link_up())
        for listener in self.link_listeners:
            listener(peer, up)

    def send(self, peer: str, service: int, body: bytes) -> bool:
        """Queue `body` for `peer` under `service`; False when no link is up or it is backed up."""
        return self.links.send_nowait(peer, bytes([service]) + body)

    # ----- roster -----------------------------------------------------------------------------

    def _on_roster(self, peer: str, body: bytes) -> None:
        try:
            result = self.gossip.receive(body)
        except RosterError as e:
            log.warning("roster gossip from %s refused: %s", peer, e.en)
            return
        for reply in result.replies:
            self.send(peer, services.ROSTER, reply)
        if result.new_entries:
            self._roster_grew(list(result.new_entries), source=peer)

    def _roster_grew(self, entries: list[Entry], source: str | None) -> None:
        log.info("roster: %d new entries (now %d members)", len(entries), len(self.roster.members()))
        try:
            save_roster(self.data_dir, self.roster)
            self._roster_mtime = self._roster_file_mtime()
        except Exception as e:  # disk full etc.: keep serving from memory, retry on the next change
            log.error("could not save the roster: %s", e)
        for body in self.gossip.announce(entries):
            for peer in self.links.up_peers():
                if peer != source:
                    self.send(peer, services.ROSTER, body)
        self._close_revoked(entries)  # after the entries are queued: the revoked node learns why
        for listener in self.roster_listeners:
            listener(entries)

    def _close_revoked(self, entries: list[Entry]) -> None:
        """A revocation closes the link to the node on that seat at once (after the entry is passed on)."""
        sids = [r.short_id for r in revocations_in(entries)]
        for node_id in revoked_node_ids(self.roster, sids):
            if self.links.close_peer(node_id, "revoked"):
                log.warning("roster: seat revoked, closed the link to %s", node_id)

    def _roster_file_mtime(self) -> float:
        try:
            return DataDir(self.data_dir).roster.stat().st_mtime
        except OSError:
            return 0.0

    async def _watch_roster_file(self) -> None:
        """Pick up entries written by `meshmeet invite` while the node runs."""
        while True:
            await trio.sleep(ROSTER_POLL_S)
            mtime = self._roster_file_mtime()
            if mtime == self._roster_mtime:
                continue
            self._roster_mtime = mtime
            try:
                on_disk = await trio.to_thread.run_sync(load_roster, self.data_dir)
            except Exception as e:
                log.warning("roster file changed but could not be read: %s", e)
                continue
            new = self.roster.merge(on_disk.entries() + on_disk.pending_claims())
            if new:
                self._roster_grew(new, source=None)

    # ----- join -------------------------------------------------------------------------------

    async def _serve_join(self, stream: trio.SocketStream, first: bytes) -> None:
        server = JoinServer(self.roster, self.key, trio.current_time(), time.time())
        outcome = server.receive_data(first, trio.current_time())
        with trio.move_on_at(server.deadline):
            while outcome is None:
                data = await stream.receive_some(RECEIVE_BYTES)
                outcome = server.receive_data(data, trio.current_time())
        if outcome is None:
            outcome = server.timeout(trio.current_time())
        reply = server.data_to_send()
        if reply:
            with trio.move_on_after(JOIN_IO_TIMEOUT_S):
                await stream.send_all(reply)
        if isinstance(outcome, JoinAccepted):
            log.info("join: seat %d claimed (new=%s)", outcome.short_id, outcome.new)
            if outcome.new_entries:
                self._roster_grew(list(outcome.new_entries), source=None)
        else:
            log.warning("join refused: %s", outcome.en)

    # ----- status -----------------------------------------------------------------------------

    def status(self) -> dict:
        out: dict = {
            "node": {
                "id": self.key.node_id,
                "site": self.me.site,
                "role": self.me.role,
                "short_id": self.me.short_id,
                "commune": self.roster.commune_name,
                "commune_id": self.roster.commune_id.hex(),
                "mesh_port": self.mesh_port,
                "http": self.http_url,
                "pid": os.getpid(),
                "uptime_s": round(time.time() - self.started_at, 1),
            },
            "links": self.links.snapshot(),
            "roster": {"members": len(self.roster.members()), "digest": self.roster.digest().hex()},
            "refused_links": self.links.refused,
            "admission": self.links.admission(),
        }
        for key, fn in self.status_extras.items():
            out[key] = fn()
        lora = out.get("lora")
        if isinstance(lora, dict):  # LoRa neighbours are links too, with transport "lora"
            out["links"] += [link for link in lora.get("links", []) if isinstance(link, dict)]
        return out

    async def _api_status(self, args: dict) -> dict:
        return self.status()

    def _write_run_file(self) -> None:
        run_dir = DataDir(self.data_dir).run
        run_dir.mkdir(mode=0o700, exist_ok=True)
        info = {"pid": os.getpid(), "http": self.http_url, "mesh_port": self.mesh_port, "node_id": self.key.node_id}
        tmp = run_dir / (RUN_FILE + ".tmp")
        try:
            tmp.write_text(json.dumps(info))
            os.replace(tmp, run_dir / RUN_FILE)
        except OSError as e:
            if not is_disk_full(e):
                raise
            tmp.unlink(missing_ok=True)  # run on: links, media and the web work without it
            log.error("disk full: %s not written, so `meshmeet` commands will not find this node", RUN_FILE)

    def _remove_run_file(self) -> None:
        try:
            (DataDir(self.data_dir).run / RUN_FILE).unlink()
        except OSError:
            pass


def _disk_full_is_507(api: ApiCall) -> ApiCall:
    """Every API handler's DiskFull becomes HTTP 507 with the bilingual message (docs/api.md)."""

    async def call(name: str, args: dict) -> dict:
        try:
            return await api(name, args)
        except DiskFull as e:
            raise ApiError(507, "disk_full", e.vi, e.en) from None

    return call


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's open-file soft limit to its hard limit; the (soft, hard) in force after.

    The default soft limit (1,024) is far below what the listeners' caps allow in sum."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY:
        wanted = max(soft, 65536) if soft != resource.RLIM_INFINITY else soft
    else:
        wanted = hard
    if wanted != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, wanted, e)
    return soft, hard


def mesh_limits(cfg: NodeConfig) -> MeshLimits:
    """The mesh listener's limits from the [limits] table."""
    lim = cfg.limits
    return MeshLimits(
        max_per_address=lim.mesh_max_per_address,
        max_pending=lim.mesh_max_pending,
        handshakes_per_s=lim.handshakes_per_s,
        joins_per_s=lim.joins_per_s,
    )


def web_limits(cfg: NodeConfig) -> WebLimits:
    """The web listeners' limits from the [limits] table."""
    lim = cfg.limits
    return WebLimits(
        max_connections=lim.web_max_connections,
        max_per_address=lim.web_max_per_address,
        idle_s=lim.web_idle_s,
        tls_handshake_s=lim.tls_handshake_s,
    )


def load_config(data_dir: Path) -> NodeConfig:
    return config_mod.load(Path(data_dir))


__all__ = ["Node", "read_run_file", "load_config", "ApiError"]
