"""The node's copy of the commune LoRa key: made once by HQ, handed along the encrypted links.

HQ makes the key at its first run. It travels as an HQ-signed offer (`lora/keyshare.py`) over the
encrypted links (service 0x50): every node hands its offer to each link that comes up, and a
member that takes a better offer stores it 0600 in DIR/lora.key and forwards it once to its other
links. The LoRa service wires `on_link_change` and `on_offer` to the node and is told of each new
key through `on_new_key`. This module must never take an offer that `accept_offer` refused, keep a
new key it could not save, or open the modem.
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
            self.offer = make_offer(node.key, node.roster.commune_id, node.me.short_id, int(time.time()))
            self._save(self.offer)
            log.info("lora: made the commune LoRa key")
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

    def on_link_change(self, peer: str, up: bool) -> None:
        """A link came up: hand it the offer held here, if any."""
        if up and self.offer is not None:
            self._node.send(peer, services.LORA, self.offer.to_bytes())

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
                self._node.send(other, services.LORA, offer.to_bytes())
