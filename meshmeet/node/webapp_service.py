"""The hall web app in the node: mounts the pages, answers `webapp_info`, keeps HTTPS certificates.

At start an HQ node makes the commune CA (DIR/ca.key 0600 + ca.crt) if missing and signs its own
certificate for its mDNS name and LAN addresses. A hall without a current certificate sends a
certificate request (CSR) to HQ over the mesh (service CERT_SERVICE; the messages are
membership/cert_messages.py's), directly when
linked to HQ, else to its tree parent which forwards it up and the answer back down; HQ signs
it with the site name from the roster. The HTTPS listener (DIR/webapp.toml `https`) reloads
when the certificate arrives. At start it also writes a fresh local API token (DIR/run/api-token,
0600: meshmeet/api_token.py) that the CLI sends and the web app checks, and tells the gateway
which host names are the node's own (its certificate names and `[network] allowed_hosts`). This
module must never import aiohttp, never send the CA key or the token anywhere, and never sign for
a node that is not on the roster.
"""

from __future__ import annotations

import logging
import socket
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..api_token import create_token
from ..config import parse_host_port
from ..errors import MeshmeetError
from ..membership.cert_messages import (CertIssued, CertMessage, CertMessageError, CertRefused, CertRequest,
                                        decode_cert_message, encode_cert_message)
from ..web import tls
from ..api.contract import ApiError
from ..wire import services
from .cert_revocation import CertRevocation
from .provides import Provides
from ..web.app import WebappOptions, WebappShared, make_setup

if TYPE_CHECKING:
    from .node import Node
    from .ports import TreeView

log = logging.getLogger(__name__)

CERT_SERVICE = services.CERT
CERT_RETRY_FIRST_S = 2.0  # the tree may not know its parent yet right after link-up
CERT_RETRY_MAX_S = 60.0
WEBAPP_FILE = "webapp.toml"
DEFAULT_HTTPS = "0.0.0.0:8443"


def read_https_setting(data_dir: Path, override: str | None = None) -> tuple[str, int] | None:
    """`meshmeet run --https` if given, else DIR/webapp.toml `https = "host:port"` or `"off"`;
    default DEFAULT_HTTPS."""
    path = Path(data_dir) / WEBAPP_FILE
    text = override or DEFAULT_HTTPS
    if override is None and path.exists():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise MeshmeetError(f"Tệp {path} bị lỗi: {e}", f"{path} is malformed: {e}") from None
        text = str(doc.get("https", DEFAULT_HTTPS))
    if text.lower() == "off":
        return None
    hp = parse_host_port(text, what="https")
    return hp.host, hp.port


class WebappService:
    """The hall web app's node service: HTTPS certificates and the app's gateway hook.

    Provides: service byte CERT_SERVICE, the `webapp_info` API, status["webapp"], the web app's
    gateway setup. Needs: the node's links, roster and gateway; the tree (`TreeView`, optional)
    to send a certificate request towards HQ."""

    def __init__(self, node: "Node", *, tree: "TreeView | None" = None) -> None:
        self.node = node
        self.tree = tree  # a hall's certificate request goes up the tree to HQ
        self.data_dir = node.data_dir
        self.https = read_https_setting(node.data_dir, node.cfg.https)
        self.shared = WebappShared()
        self.last_seen: dict[str, float] = {}
        self.cert_error: str | None = None
        self.certs_issued = 0
        self._pending_down: dict[str, str] = {}  # requester -> the neighbour its request came from
        self._cert_arrived = trio.Event()
        self._reload_wanted = trio.Event()
        self.revocation = CertRevocation(node, CERT_SERVICE, on_changed=lambda: self._reload_wanted.set())
        hostname = socket.gethostname()
        self.names = tls.node_names(hostname, tls.lan_addresses() + self._configured_ips())
        if node.me.role == "hq":
            self._ensure_hq_certs()
            self.revocation.on_roster([])  # a revocation that arrived while HQ was stopped
        hosts = tuple(dict.fromkeys(list(self.names.dns) + [hostname] + list(node.cfg.allowed_hosts)))
        opts = WebappOptions(data_dir=node.data_dir, https_host=None if self.https is None else self.https[0],
                             https_port=0 if self.https is None else self.https[1],
                             local_token=create_token(node.data_dir), allowed_hosts=hosts)
        self._web_setup = make_setup(opts, self.shared)

    def provides(self) -> Provides:
        return Provides(web_setups=(self._web_setup,), apis={"webapp_info": self._api_info},
                        status={"webapp": self.status}, link_listeners=(self._on_link,),
                        services={CERT_SERVICE: self._on_cert_message}) + self.revocation.provides()

    def _configured_ips(self) -> list[str]:
        hosts = [self.node.cfg.http.host] + ([self.https[0]] if self.https else [])
        return [h for h in hosts if tls.allowed_name(h) and h not in ("0.0.0.0", "::")]

    # ----- certificates ----------------------------------------------------------------------

    def _ensure_hq_certs(self) -> None:
        try:
            if tls.load_ca_cert(self.data_dir) is None:
                tls.create_ca(self.data_dir, self.node.roster.commune_name or "")
                log.info("webapp: created the commune CA in %s", self.data_dir)
            if not tls.cert_is_current(self.data_dir, self.names):
                cert = tls.issue_own_cert(self.data_dir, self.names, self.node.me.site)
                self.revocation.record_issued(cert, self.node.me.short_id)
                log.info("webapp: issued our HTTPS certificate for %s %s", self.names.dns, self.names.ips)
        except MeshmeetError as e:
            self.cert_error = e.en
            log.error("webapp: %s", e.en)

    def _hq_node(self) -> str | None:
        for m in self.node.roster.members():
            if m.role == "hq":
                return m.node_id
        return None

    def _towards_hq(self) -> str | None:
        """The neighbour to send a request to: HQ itself when linked, else our tree parent."""
        up = set(self.node.links.up_peers())
        hq = self._hq_node()
        if hq in up:
            return hq
        parent = self.tree.parent() if self.tree is not None else None
        return parent if parent in up else None

    def _request_cert(self) -> bool:
        peer = self._towards_hq()
        if peer is None:
            return False
        csr = tls.make_request(self.data_dir, self.names, self.node.me.site)
        return self.node.send(peer, CERT_SERVICE, encode_cert_message(CertRequest(self.node.key.node_id, csr)))

    def _on_cert_message(self, peer: str, body: bytes) -> None:
        if self.revocation.handle(peer, body):
            return
        try:
            msg = decode_cert_message(body)
        except CertMessageError as e:
            log.warning("webapp: %s from %s", e.en, peer)
            return
        me = self.node.key.node_id
        if isinstance(msg, CertRequest):
            if self.node.me.role == "hq" and tls.has_ca_key(self.data_dir):
                self.node.send(peer, CERT_SERVICE, encode_cert_message(self._sign(msg)))
            elif msg.requester != me:
                up = self._towards_hq()
                if up is not None and up != peer:
                    self._pending_down[msg.requester] = peer
                    self.node.send(up, CERT_SERVICE, body)
            return
        if msg.requester != me:
            down = self._pending_down.pop(msg.requester, None)
            if down is not None:
                self.node.send(down, CERT_SERVICE, body)
            return
        if isinstance(msg, CertRefused):
            self.cert_error = msg.en
            log.warning("webapp: HQ refused our certificate request: %s", msg.en)
            return
        try:
            tls.accept_issued(self.data_dir, msg.cert, msg.ca)
        except tls.TlsError as e:
            self.cert_error = e.en
            log.warning("webapp: %s", e.en)
            return
        self.cert_error = None
        log.info("webapp: received our HTTPS certificate from HQ")
        self._cert_arrived.set()

    def _sign(self, req: CertRequest) -> CertMessage:
        member = self.node.roster.member_by_node_id(req.requester)
        if member is None:
            return CertRefused(req.requester, "Nút không có trong danh sách xã", "node is not on the commune roster")
        try:
            cert = tls.sign_request(self.data_dir, req.csr, member.site)
        except tls.TlsError as e:
            return CertRefused(req.requester, e.vi, e.en)
        self.revocation.record_issued(cert, member.short_id)
        self.certs_issued += 1
        log.info("webapp: issued an HTTPS certificate for %s (%s)", member.site, req.requester)
        return CertIssued(req.requester, cert, tls.ca_der(self.data_dir) or b"")

    async def _reload_https(self) -> None:
        listener = self.shared.https
        gw = self.node.gateway
        if listener is None or gw is None:
            return
        await gw.run_in_loop(listener.reload())

    async def run(self) -> None:
        if self.node.me.role != "hq":
            await self._get_cert()
        while True:  # a new CRL (or certificate) on disk: new HTTPS connections use it
            await self._reload_wanted.wait()
            self._reload_wanted = trio.Event()
            await self._reload_https()

    async def _get_cert(self) -> None:
        delay = CERT_RETRY_FIRST_S
        while not tls.cert_is_current(self.data_dir, self.names):
            await trio.to_thread.run_sync(tls.node_key, self.data_dir)
            self._request_cert()
            with trio.move_on_after(delay):
                await self._cert_arrived.wait()
            self._cert_arrived = trio.Event()
            delay = min(CERT_RETRY_MAX_S, delay * 2)
        while self.node.gateway is None:
            await trio.sleep(0.5)
        await self._reload_https()

    # ----- status and API ----------------------------------------------------------------------

    def _on_link(self, peer: str, up: bool) -> None:
        self.last_seen[peer] = time.time()
        if up and self.node.me.role != "hq" and not tls.cert_is_current(self.data_dir, self.names):
            self._request_cert()

    def _tablet_url(self) -> str | None:
        listener = self.shared.https
        if listener is None or listener.url is None:
            return None
        host = self.https[0] if self.https else ""
        if host in ("0.0.0.0", "::", ""):
            ips = [a for a in self.names.ips if not a.startswith("127.")]
            host = ips[0] if ips else self.names.dns[0]
        return f"https://{host}:{listener.port}"

    def status(self) -> dict:
        listener = self.shared.https
        return {
            "https": None if listener is None else listener.url,
            "https_error": (listener.error if listener else None) or self.cert_error,
            "tablet_url": self._tablet_url(),
            "certificate": {"dns": list(self.names.dns), "ips": list(self.names.ips),
                            "current": tls.cert_is_current(self.data_dir, self.names)},
            "ca_fingerprint": tls.ca_fingerprint(self.data_dir),
            "certs_issued": self.certs_issued,
            "revocation": self.revocation.status(),
            "uploads": self.shared.uploads,
            "logins_refused": self.shared.logins_refused,
            "last_seen": {p: round(t, 1) for p, t in self.last_seen.items()},
        }

    async def _api_info(self, args: dict) -> dict:
        me = self.node.me
        briefing_root = bool(me.backup and self.tree is not None and self.tree.leads_briefing())
        return {
            "node_id": self.node.key.node_id,
            "site": me.site,
            "role": me.role,
            "commune": self.node.roster.commune_name,
            "can_chair": me.role == "hq" or briefing_root,
            "sites": {m.node_id: m.site for m in self.node.roster.members()},
            "tablet_url": self._tablet_url(),
            "ca_fingerprint": tls.ca_fingerprint(self.data_dir),
            "data_dir": str(self.data_dir.resolve()),
        }


__all__ = ["WebappService", "read_https_setting", "CERT_SERVICE", "ApiError"]
