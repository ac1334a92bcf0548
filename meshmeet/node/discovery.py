"""mDNS discovery of neighbour nodes with zeroconf, and the trio driver that dials what it sees.

`Discovery` registers `_meshmeet._tcp.local.` with a hashed commune id and the node id in TXT,
browses for the same service and delivers Sighting and Withdrawn records to a trio channel.
zeroconf runs its own thread; its blocking calls (register ~1.6 s, resolve) run in
trio.to_thread and its callbacks reach trio only through a TrioToken. `MdnsDialer` feeds those
records into the sans-IO table of sightings.py (expiry, cap, per-target backoff, overall dial
rate) and dials what it hands out. This module must never decide whom to trust (a sighting is a
hint to dial, membership is proven by the handshake) and never dial outside the table's say.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable

import trio
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from .sightings import SIGHTING_TTL_S, Key, Sightings

log = logging.getLogger(__name__)

SERVICE_TYPE = "_meshmeet._tcp.local."
COMMUNE_TAG_BYTES = 8
RESOLVE_TIMEOUT_MS = 3000
SIGHTING_QUEUE = 256
REFRESH_S = SIGHTING_TTL_S / 3  # kept sightings are resolved again this often (before they expire)


def commune_tag(commune_id: bytes) -> str:
    """The hashed commune id published in TXT (the raw id is not advertised)."""
    return hashlib.blake2b(commune_id, digest_size=COMMUNE_TAG_BYTES, person=b"meshmeet-mdns").hexdigest()


@dataclass(frozen=True)
class Sighting:
    """A node of our commune seen on the LAN (`name`: its mDNS service name)."""

    node_id: str
    host: str
    port: int
    name: str = ""


@dataclass(frozen=True)
class Withdrawn:
    """mDNS says the service `name` is gone (a goodbye, or its records expired)."""

    name: str


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
        withdrawals: bool = False,
    ) -> None:
        """`sightings` gets Sighting records, and Withdrawn ones too if `withdrawals`."""
        self._tag = commune_tag(commune_id)
        self._node_id = node_id
        self._port = port
        self._interfaces = list(interfaces)
        self._sightings = sightings
        self._withdrawals = withdrawals
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._info: ServiceInfo | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._names: trio.MemorySendChannel | None = None  # (name, removed)

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
        if self._token is None or self._names is None:
            return
        names = self._names
        removed = state_change is ServiceStateChange.Removed
        if removed and not self._withdrawals:
            return

        def deliver() -> None:
            try:
                names.send_nowait((name, removed))
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
        return [Sighting(props["n"], addr, info.port, name) for addr in info.parsed_addresses(IPVersion.V4Only)]

    async def resolve(self, name: str) -> list[Sighting]:
        """What `name` resolves to now (from zeroconf's cache, else asked on the LAN)."""
        return await trio.to_thread.run_sync(self._resolve_blocking, name, abandon_on_cancel=True)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Register, browse and forward sightings until cancelled; unregister on the way out."""
        self._token = trio.lowlevel.current_trio_token()
        send_names, receive_names = trio.open_memory_channel[tuple[str, bool]](SIGHTING_QUEUE)
        self._names = send_names
        try:
            await trio.to_thread.run_sync(self._start_blocking)
            if self._port is not None:
                log.info("mdns: published %s on port %d", self._node_id, self._port)
            task_status.started()
            async with receive_names:
                async for name, removed in receive_names:
                    for record in [Withdrawn(name)] if removed else await self.resolve(name):
                        try:
                            self._sightings.send_nowait(record)
                        except trio.WouldBlock:
                            log.warning("mdns: sighting queue full, dropping %s", record)
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


class MdnsDialer:
    """Dials the targets the sightings table hands out; see the module docstring.

    `dial(host, port)` connects and runs one link, returning the peer's node id if it came up
    (after the link ended) or None; `is_member` and `is_linked` look a node id up in the roster
    and among the links; `resolve(name)` asks mDNS again (refreshing a sighting before its TTL)."""

    def __init__(self, table: Sightings, *, dial: Callable[[str, int], Awaitable[str | None]],
                 is_member: Callable[[str], bool], is_linked: Callable[[str], bool],
                 resolve: Callable[[str], Awaitable[list[Sighting]]]) -> None:
        self.table = table
        self._dial = dial
        self._is_member = is_member
        self._is_linked = is_linked
        self._resolve = resolve
        self._wake = trio.Event()

    async def run(self, records: trio.MemoryReceiveChannel) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._take, records)
            nursery.start_soon(self._refresh)
            while True:
                self._wake = trio.Event()
                now = trio.current_time()
                for t in self.table.due(now):
                    if self._is_linked(t.node_id):  # linked already (it dialled us): nothing to do
                        self.table.dialled(t.key, True, now)
                    else:
                        nursery.start_soon(self._dial_one, t.key)
                deadline = self.table.next_deadline(trio.current_time())
                with trio.move_on_at(REFRESH_S + trio.current_time() if deadline is None else deadline):
                    await self._wake.wait()

    def _note(self, record: Sighting | Withdrawn) -> None:
        now = trio.current_time()
        if isinstance(record, Withdrawn):
            if self.table.withdrawn(record.name):
                log.info("mdns: %s withdrawn", record.name)
        elif not self.table.seen(record.name, record.host, record.port, record.node_id,
                                 self._is_member(record.node_id), now):
            log.debug("mdns: %s at %s:%d not kept (%d sightings already)", record.node_id, record.host,
                      record.port, self.table.cap)
        self._wake.set()

    async def _take(self, records: trio.MemoryReceiveChannel) -> None:
        async for record in records:
            self._note(record)

    async def _refresh(self) -> None:
        """Ask mDNS again about every kept name before its sighting expires."""
        while True:
            await trio.sleep(REFRESH_S)
            for name in self.table.names():
                for record in await self._resolve(name):
                    self._note(record)

    async def _dial_one(self, key: Key) -> None:
        linked = False
        try:
            linked = await self._dial(key[1], key[2]) is not None
        finally:
            self.table.dialled(key, linked, trio.current_time())
            self._wake.set()
