"""The trio driver for encrypted links: TCP listener, dialer, one link per pair of nodes.

Feeds bytes and clock ticks into meshmeet.wire.LinkConnection and moves its output to the socket.
Keeps link state and counters for status, reconnects with exponential backoff and jitter, and
resolves simultaneous dials to a single link. Bounds what strangers can make it do (MeshLimits):
connections per source address, connections not yet authenticated (the oldest is dropped to make
room for a new one), handshakes and join attempts per source per second (token buckets, checked
before any signature is made or checked). Only the writer task writes to a link's socket, each
write with a deadline, so a peer that stops reading can never stall the reader's keepalive timer.
One link's own life (its writer, its reader, the three ways it closes) is link.py's. This
module must never parse handshake or frame bytes itself, and a misbehaving peer must only ever
cost that peer its own connection.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

import trio

from ..membership.identity import KeyPair
from ..wire import HandshakeComplete, LinkConnection, Role
from ..wire.admission import ConnectionCounter, PendingSet, SourceRateLimiter, source_key
from .link import RECEIVE_BYTES, Link, LinkHooks, PeerRecord, keep_new, kernel_min_rtt_s, limit_unsent, peer_address, run_link

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 4.0  # a failing dial costs one SYN; a returning cable is used within ~4-6 s
JOIN_FIRST_BYTE = 0x4A
FIRST_BYTE_TIMEOUT_S = 10.0
ACCEPT_RETRY_S = 0.1


@dataclass(frozen=True)
class MeshLimits:
    """What the mesh listener grants strangers (sources are IPv4 addresses or IPv6 /64s)."""

    max_connections: int = 512  # accepted connections in all, links included
    max_per_address: int = 16  # accepted connections from one source
    max_pending: int = 64  # accepted, not yet authenticated; the oldest silent one (else oldest) makes room
    # accepted connections from one source that have sent nothing yet (a new connection is silent
    # for a moment: halls joining at once behind one NAT, or the testbed's parallel joins on
    # loopback, must not be refused; a slow-loris source is still held by max_per_address)
    max_silent_per_address: int = 8
    handshakes_per_s: float = 2.0  # per source: link handshakes answered (each costs a signature)
    handshake_burst: int = 10
    joins_per_s: float = 0.5  # per source: join requests checked
    join_burst: int = 8  # a commune's halls joining in one go through the same NAT address


MessageHandler = Callable[[str, bytes], None]
JoinHandler = Callable[[trio.SocketStream, bytes], Awaitable[None]]


class LinkManager:
    """Owns every link of this node: accepts, dials, deduplicates, reports."""

    def __init__(
        self,
        *,
        me: KeyPair,
        my_short_id: int,
        commune_id: bytes,
        lookup: Callable[[int], bytes | None],
        site_of: Callable[[str], str],
        on_message: MessageHandler,
        on_link_change: Callable[[str, bool], None] = lambda peer, up: None,
        on_join: JoinHandler | None = None,
        keepalive_s: float = 5.0,
        rng: random.Random | None = None,
        limits: MeshLimits = MeshLimits(),
    ) -> None:
        self._me = me
        self._my_short_id = my_short_id
        self._commune_id = commune_id
        self._lookup = lookup
        self._site_of = site_of
        self._on_message = on_message
        self._on_link_change = on_link_change
        self.first_byte_handlers: dict[int, JoinHandler] = {} if on_join is None else {JOIN_FIRST_BYTE: on_join}  # + "R"
        self._keepalive_s = keepalive_s
        self._rng = rng or random.Random()
        self.peers: dict[str, PeerRecord] = {}
        self._targets: dict[tuple[str, int], trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self.refused = 0
        self.listen_port: int | None = None
        self.limits = limits
        self._connections = ConnectionCounter(limits.max_connections, limits.max_per_address)
        self._pending = PendingSet(limits.max_pending)  # accepted, not yet authenticated
        self._handshake_rate = SourceRateLimiter(limits.handshakes_per_s, limits.handshake_burst)
        self._join_rate = SourceRateLimiter(limits.joins_per_s, limits.join_burst)
        self.refused_connections = 0
        self.accepted_connections = 0  # since start (a peer redialing a link it already has shows here)
        self._silent_by_source: dict[str, int] = {}
        self._hooks = LinkHooks(link_up=self._link_up, deliver=self._deliver, refused=self._count_refused,
                                link_down=lambda peer: self._on_link_change(peer, False))

    # ----- public API -------------------------------------------------------------------

    async def run(self, listen_host: str, listen_port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; dial targets added with add_target."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                listeners = await trio.open_tcp_listeners(listen_port, host=listen_host)
            except OSError as e:
                from ..errors import MeshmeetError

                raise MeshmeetError(
                    f"Không mở được cổng mesh {listen_host}:{listen_port}: {e.strerror}",
                    f"cannot listen on mesh port {listen_host}:{listen_port}: {e.strerror}",
                ) from None
            self.listen_port = listeners[0].socket.getsockname()[1]
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener)
            task_status.started(self.listen_port)

    def add_target(self, host: str, port: int, node_id: str | None = None) -> None:
        """Dial host:port (again) now; keeps redialing with backoff while no link to it is up."""
        key = (host, port)
        if node_id == self._me.node_id:
            return
        wake = self._targets.get(key)
        if wake is not None:
            wake.set()  # a fresh sighting: skip the rest of the backoff
            return
        if self._nursery is None:
            raise RuntimeError("LinkManager.run has not started")
        self._targets[key] = trio.Event()
        self._nursery.start_soon(self._dial_loop, host, port, node_id)

    async def send(self, peer_node_id: str, payload: bytes) -> bool:
        """Send one application message to a linked peer; False when no link is up."""
        record = self.peers.get(peer_node_id)
        if record is None or record.link is None or record.state != "up":
            return False
        try:
            await record.link.send(payload)
            return True
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False

    def send_nowait(self, peer_node_id: str, payload: bytes) -> bool:
        """Queue a message to a linked peer without waiting; False if no link or its queue is full."""
        record = self.peers.get(peer_node_id)
        if record is None or record.link is None or record.state != "up":
            return False
        return record.link.send_nowait(payload)

    def rtt_ms(self, peer_node_id: str) -> float | None:
        """The last measured round trip to a peer, if any."""
        record = self.peers.get(peer_node_id)
        return None if record is None else record.rtt_ms

    def path_min_rtt_s(self, peer_node_id: str) -> float | None:
        """The kernel's lowest TCP round trip on the link to a peer (see link.kernel_min_rtt_s)."""
        record = self.peers.get(peer_node_id)
        return kernel_min_rtt_s(record.link.stream) if record and record.link and record.state == "up" else None

    def queue_depth(self, peer_node_id: str) -> int:
        """Messages waiting in the link's writer queue (0 when no link is up)."""
        record = self.peers.get(peer_node_id)
        if record is None or record.link is None:
            return 0
        return record.link.outgoing_send.statistics().current_buffer_used

    def close_peer(self, peer_node_id: str, reason: str) -> bool:
        """close_link without waiting (a revoked member: its redials then fail the handshake)."""
        if up := (peer_node_id in self.up_peers() and self._nursery is not None):
            self._nursery.start_soon(self.close_link, peer_node_id, reason)  # type: ignore[union-attr]
        return up

    def up_peers(self) -> list[str]:
        return [p.node_id for p in self.peers.values() if p.state == "up"]

    async def close_link(self, peer_node_id: str, reason: str) -> None:
        """Close the link to a peer (it is redialled as usual); nothing when none is open."""
        record = self.peers.get(peer_node_id)
        if record is not None and record.link is not None:
            await close_guarded(record.link, reason)

    def peer_host(self, peer_node_id: str) -> str | None:
        """The IP address the link to a peer is connected to, None when no link is open."""
        record = self.peers.get(peer_node_id)
        link = None if record is None else record.link
        try:
            return link.stream.socket.getpeername()[0] if link is not None else None
        except OSError:
            return None

    def snapshot(self) -> list[dict]:
        """Links for `status --json`."""
        return [{"peer": rec.node_id, "site": rec.site or self._site_of(rec.node_id), "transport": "tcp",
                 "state": rec.state, "rtt_ms": None if rec.rtt_ms is None else round(rec.rtt_ms, 3),
                 "address": rec.link.address if rec.link else None,
                 "bytes_in": rec.link.conn.bytes_received if rec.link else 0,
                 "bytes_out": rec.link.conn.bytes_sent if rec.link else 0,
                 "links_opened": rec.links_opened, "last_error": rec.last_error}
                for rec in sorted(self.peers.values(), key=lambda r: r.node_id)]

    # ----- accept / dial ----------------------------------------------------------------

    def admission(self) -> dict:
        """What the listener refused, for status."""
        return {
            "connections": self._connections.total,
            "accepted_connections": self.accepted_connections,
            "pending": len(self._pending),
            "refused_connections": self.refused_connections,
            "dropped_pending": self._pending.dropped,
            "refused_handshakes": self._handshake_rate.refused,
            "refused_joins": self._join_rate.refused,
        }

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        """Accept forever; refuse over-cap connections here, before any task is spent on them."""
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:  # EMFILE and friends: wait a little, keep serving the rest
                log.warning("mesh accept failed: %s", e)
                await trio.sleep(ACCEPT_RETRY_S)
                continue
            address = peer_address(stream)
            source = source_key(address.rpartition(":")[0])
            too_many_silent = self._silent_by_source.get(source, 0) >= self.limits.max_silent_per_address
            if too_many_silent or not self._connections.open(source):
                self.refused_connections += 1
                stream.socket.close()
                continue
            self.accepted_connections += 1
            self._silent_by_source[source] = self._silent_by_source.get(source, 0) + 1
            self._nursery.start_soon(self._accept, stream, address, source)  # type: ignore[union-attr]

    async def _accept(self, stream: trio.SocketStream, address: str, source: str) -> None:
        silent = True

        def no_longer_silent() -> None:
            nonlocal silent
            if silent:
                silent = False
                left = self._silent_by_source.pop(source) - 1
                if left:
                    self._silent_by_source[source] = left

        def spoke() -> None:
            no_longer_silent()
            self._pending.spoke(scope)

        scope = trio.CancelScope()
        try:
            with scope:
                self._pending.add(scope, scope.cancel)  # may drop the oldest pending one
                await self._serve_accepted(stream, address, source, spoke, lambda: self._pending.remove(scope))
        finally:
            no_longer_silent()
            self._pending.remove(scope)
            self._connections.close(source)
            await trio.aclose_forcefully(stream)

    async def _serve_accepted(
        self,
        stream: trio.SocketStream,
        address: str,
        source: str,
        spoke: Callable[[], None],
        established: Callable[[], object],
    ) -> None:
        limit_unsent(stream)
        try:
            first = b""
            with trio.move_on_after(FIRST_BYTE_TIMEOUT_S):
                first = await stream.receive_some(RECEIVE_BYTES)
            if not first:
                return
            now = trio.current_time()
            if (special := self.first_byte_handlers.get(first[0])) is not None:  # join, HQ recovery
                if self._join_rate.allow(source, now):
                    spoke()
                    await special(stream, first)
                else:
                    log.info("join/recovery from %s refused: over %.1f/s", address, self.limits.joins_per_s)
                return
            if not self._handshake_rate.allow(source, now):
                log.debug("handshake from %s refused: over %.1f/s", address, self.limits.handshakes_per_s)
                return
            spoke()
            conn = self._new_conn(Role.RESPONDER)
            await run_link(stream, conn, address, first, None, established, self._hooks)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.info("link from %s: transport error %s", address, e)
        except Exception:  # a bug in one link must never take the node down
            log.exception("link from %s failed", address)

    async def _dial_loop(self, host: str, port: int, node_id: str | None) -> None:
        key = (host, port)
        backoff = BACKOFF_START_S
        known_id = node_id
        while True:
            record = self.peers.get(known_id) if known_id else None
            if record is not None and record.state == "up":
                await record.changed.wait()
                continue
            if record is not None:
                record.state = "connecting"
            outcome = await self.dial_once(host, port)
            if isinstance(outcome, str):
                known_id = outcome
                backoff = BACKOFF_START_S
                continue
            if record is not None and record.state == "connecting":
                record.state = "down"
            delay = backoff * (0.5 + self._rng.random())
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            wake = self._targets[key]
            with trio.move_on_after(delay):
                await wake.wait()
            if wake.is_set():
                self._targets[key] = trio.Event()
                backoff = BACKOFF_START_S

    async def dial_once(self, host: str, port: int) -> str | None:
        """Connect, handshake and run one link; the peer's node id if it came up, else None."""
        address = f"{host}:{port}"
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                stream = await trio.open_tcp_stream(host, port)
            limit_unsent(stream)
        except (OSError, trio.TooSlowError) as e:
            log.debug("dial %s failed: %s", address, e)
            return None
        conn = self._new_conn(Role.INITIATOR)
        try:
            conn.start(trio.current_time())
            return await run_link(stream, conn, address, b"", self._my_short_id, None, self._hooks)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.info("link to %s: transport error %s", address, e)
            return None
        except Exception:  # a bug in one link must never take the node down
            log.exception("link to %s failed", address)
            return None
        finally:
            await trio.aclose_forcefully(stream)

    def _new_conn(self, role: Role) -> LinkConnection:
        return LinkConnection(
            role=role,
            me=self._me,
            my_short_id=self._my_short_id,
            commune_id=self._commune_id,
            lookup=self._lookup,
            now=trio.current_time(),
            keepalive_s=self._keepalive_s,
        )

    # ----- one link's life (link.py runs it; these are its hooks) ---------------------------

    def _link_up(self, link: Link, event: HandshakeComplete) -> PeerRecord | None:
        peer = event.peer_node_id
        record = self.peers.get(peer)
        if record is None:
            record = self.peers[peer] = PeerRecord(node_id=peer, site=self._site_of(peer))
        old = record.link
        if old is not None and not old.closed:
            if not keep_new(old, link):
                log.info("link %s: duplicate of an existing link to %s, closing", link.address, peer)
                self._nursery.start_soon(close_guarded, link, "duplicate link")  # type: ignore[union-attr]
                return None
            self._nursery.start_soon(close_guarded, old, "replaced by a newer link")  # type: ignore[union-attr]
            record.link = None
            self._on_link_change(peer, False)  # listeners see down before the new link's up
        record.link = link
        record.state = "up"
        record.links_opened += 1
        record.last_error = ""
        record.site = self._site_of(peer)
        log.info("link up: %s (%s) via %s", peer, record.site, link.address)
        record.notify()
        self._on_link_change(peer, True)
        return record

    def _count_refused(self) -> None:
        self.refused += 1

    def _deliver(self, peer: str, payload: bytes) -> None:
        try:
            self._on_message(peer, payload)
        except Exception:  # a bad message must not take the link down with it
            log.exception("handler failed for a message from %s", peer)


async def close_guarded(link: Link, reason: str) -> None:
    """`link.close(reason)`, run in the node-wide nursery: a bug in one link's close must end only
    that link (its stream is dropped), never the node (it did once: a TypeError in close)."""
    try:
        await link.close(reason)
    except Exception:
        log.exception("closing link %s failed; dropping its stream", link.address)
        await trio.aclose_forcefully(link.stream)
