"""The commune CRL in the node: HQ signs a new one when a seat is revoked; every node keeps the newest.

Rides the certificate service (CERT_SERVICE) as `msgpack([4, crl_der])` (docs/protocol/membership.md,
"Revocation"). HQ, on a roster revocation (or at start, for one that arrived while it was stopped),
signs a CRL naming every certificate it issued to a revoked seat (web/crl.py) and hands it to its
links; a node that gets a CRL signed by the commune CA and numbered above its own stores it
(DIR/tls/crl.pem), passes it to its other links, and reloads its HTTPS listener, which from then
on refuses those certificates in the TLS handshake. Every node hands its CRL to each link on
link-up, so a node that was away catches up. This module must never store a CRL `crl.check_crl`
refused, never touch the CA key except through web/crl.py at HQ, and never import aiohttp.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import msgpack
from cryptography import x509

from ..web import crl as crl_mod
from ..web import tls
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)

KIND_CRL = 4


def encode_crl_message(der: bytes) -> bytes:
    return msgpack.packb([KIND_CRL, der], use_bin_type=True)


def decode_crl_message(body: bytes) -> bytes | None:
    """The CRL bytes when `body` is a CRL message, else None (another certificate message, or junk)."""
    try:
        items = msgpack.unpackb(body, raw=False)
    except Exception:  # msgpack raises several types on junk
        return None
    if isinstance(items, list) and len(items) == 2 and items[0] == KIND_CRL and isinstance(items[1], bytes):
        return items[1]
    return None


class CertRevocation:
    """Keeps DIR/tls/crl.pem current and passes it on; HQ makes it."""

    def __init__(self, node: "Node", service: int, on_changed: Callable[[], None]) -> None:
        self.node = node
        self.data_dir = node.data_dir
        self.service = service
        self._on_changed = on_changed  # the CRL file changed: reload the HTTPS listener
        self.crls_received = 0

    def provides(self) -> Provides:
        """A roster listener (a revocation) and a link listener (a new link gets the CRL): part of WebappService's."""
        return Provides(roster_listeners=(self.on_roster,), link_listeners=(self.on_link,))

    @property
    def is_issuer(self) -> bool:
        return self.node.me.role == "hq" and tls.has_ca_key(self.data_dir)

    def record_issued(self, cert: "bytes | x509.Certificate", short_id: int) -> None:
        """HQ: remember which seat a certificate it just signed (DER or parsed) belongs to."""
        if isinstance(cert, bytes):
            cert = x509.load_der_x509_certificate(cert)
        crl_mod.record_issued(self.data_dir, cert, short_id)

    def _uncovered(self) -> set[int]:
        """Revoked seats with a certificate issued here that the stored CRL does not list yet."""
        revoked = set(self.node.roster.revoked_short_ids())
        listed = crl_mod.revoked_serials(self.data_dir)
        return {sid for serial, sid in crl_mod.issued(self.data_dir).items() if sid in revoked and serial not in listed}

    def ensure_current(self) -> bool:
        """HQ: sign and hand out a new CRL when a revoked seat's certificate is not on it; True if made."""
        if not self.is_issuer or not self._uncovered():
            return False
        der = crl_mod.make_crl(self.data_dir, self.node.roster.revoked_short_ids())
        crl_mod.store_if_newer(self.data_dir, der)
        log.warning("webapp: new certificate revocation list for seats %s", list(self.node.roster.revoked_short_ids()))
        self._spread(der, source=None)
        return True

    def on_roster(self, entries: list) -> None:
        try:
            self.ensure_current()
        except tls.TlsError as e:
            log.error("webapp: could not sign a revocation list: %s", e.en)

    def on_link(self, peer: str, up: bool) -> None:
        der = crl_mod.crl_der(self.data_dir) if up else None
        if der is not None:
            self.node.send(peer, self.service, encode_crl_message(der))

    def handle(self, peer: str, body: bytes) -> bool:
        """Take a CRL message from a link; False when `body` is not one (another certificate message)."""
        der = decode_crl_message(body)
        if der is None:
            return False
        try:
            newer = crl_mod.store_if_newer(self.data_dir, der)
        except tls.TlsError as e:
            log.warning("webapp: revocation list from %s refused: %s", peer, e.en)
            return True
        except OSError as e:
            log.error("webapp: could not save the revocation list: %s", e)
            return True
        if newer:
            self.crls_received += 1
            log.info("webapp: new certificate revocation list via %s", peer)
            self._spread(der, source=peer)
        return True

    def _spread(self, der: bytes, source: str | None) -> None:
        body = encode_crl_message(der)
        for peer in self.node.links.up_peers():
            if peer != source and self.node.roster.member_by_node_id(peer) is not None:
                self.node.send(peer, self.service, body)
        self._on_changed()

    def status(self) -> dict:
        crl = crl_mod.load_crl(self.data_dir)
        return {"crl_number": crl_mod.crl_number(crl) if crl else None,
                "revoked_certificates": len(crl_mod.revoked_serials(self.data_dir))}
