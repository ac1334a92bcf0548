"""mDNS discovery of neighbour nodes with zeroconf, delivered to trio as Sighting records.

Registers `_meshmeet._tcp.local.` with a hashed commune id and the node id in TXT, and browses
for the same service. zeroconf runs its own thread; its blocking calls (register ~1.6 s, resolve)
run in trio.to_thread and its callbacks reach trio only through a TrioToken. This module must
never decide whom to trust: a sighting is a hint to dial, membership is proven by the handshake.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import socket
from dataclasses import dataclass

import trio
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_meshmeet._tcp.local."
COMMUNE_TAG_BYTES = 8
RESOLVE_TIMEOUT_MS = 3000
SIGHTING_QUEUE = 256


def commune_tag(commune_id: bytes) -> str:
    """The hashed commune id published in TXT (the raw id is not advertised)."""
    return hashlib.blake2b(commune_id, digest_size=COMMUNE_TAG_BYTES, person=b"meshmeet-mdns").hexdigest()


@dataclass(frozen=True)
class Sighting:
    """A node of our commune seen on the LAN."""

    node_id: str
    host: str
    port: int


class Discovery:
    """Publishes this node and reports other nodes of the same commune to a trio channel."""

    def __init__(
        self,
        *,
        commune_id: bytes,
        node_id: str,
        port: int | None,
        interfaces: tuple[str, ...] = (),
        sightings: trio.MemorySendChannel,
    ) -> None:
        self._tag = commune_tag(commune_id)
        self._node_id = node_id
        self._port = port
        self._interfaces = list(interfaces)
        self._sightings = sightings
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._info: ServiceInfo | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._names: trio.MemorySendChannel | None = None

    def _addresses(self) -> list[bytes]:
        if self._interfaces:
            ips = self._interfaces
        else:
            ips = sorted({a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)})
        return [ipaddress.ip_address(ip).packed for ip in ips if ipaddress.ip_address(ip).version == 4]

    def _start_blocking(self) -> None:
        kwargs = {"interfaces": self._interfaces} if self._interfaces else {}
        self._zc = Zeroconf(ip_version=IPVersion.V4Only, **kwargs)
        if self._port is None:  # browse only (a node that is still joining)
            self._browser = ServiceBrowser(self._zc, SERVICE_TYPE, handlers=[self._on_change])
            return
        self._info = ServiceInfo(
            SERVICE_TYPE,
            f"{self._node_id}.{SERVICE_TYPE}",
            addresses=self._addresses(),
            port=self._port,
            properties={"v": "1", "c": self._tag, "n": self._node_id},
        )
        self._zc.register_service(self._info, allow_name_change=True)
        self._browser = ServiceBrowser(self._zc, SERVICE_TYPE, handlers=[self._on_change])

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        # zeroconf's thread: hand the name to trio, never raise here.
        if state_change is ServiceStateChange.Removed or self._token is None or self._names is None:
            return
        names = self._names

        def deliver() -> None:
            try:
                names.send_nowait(name)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass

        try:
            self._token.run_sync_soon(deliver)
        except trio.RunFinishedError:
            pass

    def _resolve_blocking(self, name: str) -> list[Sighting]:
        zc = self._zc
        if zc is None:
            return []
        info = zc.get_service_info(SERVICE_TYPE, name, timeout=RESOLVE_TIMEOUT_MS)
        if info is None or info.port is None:
            return []
        props = {k.decode(errors="replace"): (v or b"").decode(errors="replace") for k, v in info.properties.items()}
        if props.get("c") != self._tag or props.get("n") in (None, self._node_id):
            return []
        return [Sighting(props["n"], addr, info.port) for addr in info.parsed_addresses(IPVersion.V4Only)]

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Register, browse and forward sightings until cancelled; unregister on the way out."""
        self._token = trio.lowlevel.current_trio_token()
        send_names, receive_names = trio.open_memory_channel[str](SIGHTING_QUEUE)
        self._names = send_names
        try:
            await trio.to_thread.run_sync(self._start_blocking)
            if self._port is not None:
                log.info("mdns: published %s on port %d", self._node_id, self._port)
            task_status.started()
            async with receive_names:
                async for name in receive_names:
                    for sighting in await trio.to_thread.run_sync(self._resolve_blocking, name, abandon_on_cancel=True):
                        try:
                            self._sightings.send_nowait(sighting)
                        except trio.WouldBlock:
                            log.warning("mdns: sighting queue full, dropping %s", sighting)
        finally:
            self._names = None
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._stop_blocking)

    def _stop_blocking(self) -> None:
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            if self._browser is not None:
                self._browser.cancel()
            if self._info is not None:
                zc.unregister_service(self._info)
        finally:
            zc.close()
