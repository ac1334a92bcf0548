"""The node's copy of the commune LoRa key: made once by HQ, handed along the encrypted links.

HQ makes the key at its first run. It travels as an HQ-signed offer (`lora/keyshare.py`) over the
encrypted links (service 0x50): every node hands its offer to each link that comes up, and a
member that takes a better offer stores it 0600 in DIR/lora.key and forwards it once to its other
links. The LoRa service wires `on_link_change` and `on_offer` to the node and is told of each new
key through `on_new_key`. When the roster gains a revocation, HQ makes a new key whose offer names
every revoked seat (`excluded`); no node hands an offer to a peer that is not a current member or
that the offer excludes. This module must never take an offer that `accept_offer` refused, keep a
new key it could not save, give a key to a revoked seat, or open the modem.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import trio

from ..membership.identity import verify
from ..lora_io import statefile
from ..lora.keyshare import KeyOffer, KeyShareError, accept_offer, better, make_offer
from ..wire import services

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)


class CommuneLoraKey:
    """The signed key offer this node holds (None until HQ's reaches it) and `ready` once it does."""

    def __init__(self, node: "Node", on_new_key: Callable[[KeyOffer], None]) -> None:
        self._node = node
        self._path = Path(node.data_dir) / statefile.KEY_FILE
        self._on_new_key = on_new_key
        self.offer: KeyOffer | None = self._load()
        if self.offer is None and node.me.role == "hq":
            self.offer = make_offer(node.key, node.roster.commune_id, node.me.short_id, int(time.time()),
                                    excluded=node.roster.revoked_short_ids())
            self._save(self.offer)
            log.info("lora: made the commune LoRa key")
        elif self._must_rotate():
            self.rotate()  # a revocation arrived while this HQ was stopped
        self.ready = trio.Event()
        if self.offer is not None:
            self.ready.set()

    def _check(self, body: bytes) -> KeyOffer:
        return accept_offer(body, self._node.roster.commune_id, self._node.roster.member_by_short_id, verify)

    def _load(self) -> KeyOffer | None:
        body = statefile.read_bytes(self._path)
        if body is None:
            return None
        try:
            return self._check(body)
        except KeyShareError as e:
            log.warning("lora: ignoring %s: %s", statefile.KEY_FILE, e.en)
            return None

    def _save(self, offer: KeyOffer) -> None:
        statefile.write_private(self._path, offer.to_bytes())

    def _must_rotate(self) -> bool:
        """HQ: a seat is revoked that the key held here was not made to exclude."""
        if self.offer is None or self._node.me.role != "hq":
            return False
        return not set(self._node.roster.revoked_short_ids()) <= set(self.offer.excluded)

    def rotate(self) -> KeyOffer:
        """HQ: make, save and hand out a new key that excludes every revoked seat."""
        node = self._node
        issued = max(int(time.time()), self.offer.issued_at + 1 if self.offer else 0)
        offer = make_offer(node.key, node.roster.commune_id, node.me.short_id, issued,
                           excluded=node.roster.revoked_short_ids())
        self._save(offer)
        self.offer = offer
        log.warning("lora: new commune LoRa key (revoked seats %s shut out)", list(offer.excluded))
        self._on_new_key(offer)
        for peer in node.links.up_peers():
            self._hand(peer, offer)
        return offer

    def on_roster(self, entries: list) -> None:
        """The roster grew: HQ rotates the key when a revocation came with it."""
        if self._must_rotate():
            self.rotate()

    def _hand(self, peer: str, offer: KeyOffer) -> None:
        """Send the offer to a link peer that is a current member the offer does not exclude."""
        member = self._node.roster.member_by_node_id(peer)
        if member is None or not offer.may_reach(member.short_id):
            return
        self._node.send(peer, services.LORA, offer.to_bytes())

    def on_link_change(self, peer: str, up: bool) -> None:
        """A link came up: hand it the offer held here, if any."""
        if up and self.offer is not None:
            self._hand(peer, self.offer)

    def on_offer(self, peer: str, body: bytes) -> None:
        """An offer arrived on service 0x50: keep it if it checks out and beats ours, then pass it on."""
        try:
            offer = self._check(body)
        except KeyShareError as e:
            log.warning("lora: key offer from %s refused: %s", peer, e.en)
            return
        if not better(offer, self.offer):
            return
        try:
            self._save(offer)
        except OSError as e:
            log.error("lora: could not save the LoRa key: %s", e)
            return
        log.info("lora: commune LoRa key from HQ #%d (issued %d) via %s", offer.signer, offer.issued_at, peer)
        self.offer = offer
        self._on_new_key(offer)
        self.ready.set()
        for other in self._node.links.up_peers():
            if other != peer:
                self._hand(other, offer)
