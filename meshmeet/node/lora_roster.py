"""The roster as the LoRa core needs it: public keys by short id, and who may send alerts and control.

Both are live views (each lookup reads the node's current roster, so a revocation or a new member
counts at once) handed to `LoraPeers`. This module must never cache a key or decide anything the
roster does not say.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .node import Node


class RosterKeys(Mapping):
    """Ed25519 public keys by short id, looked up in the live roster."""

    def __init__(self, node: "Node") -> None:
        self._node = node

    def __getitem__(self, short_id: int) -> bytes:
        member = self._node.roster.member_by_short_id(short_id)
        if member is None:
            raise KeyError(short_id)
        return member.public_key

    def __iter__(self) -> Iterator[int]:
        return (m.short_id for m in self._node.roster.members())

    def __len__(self) -> int:
        return len(self._node.roster.members())


class Authorities:
    """Who may send alerts and meeting control over LoRa: HQ members and backup sites."""

    def __init__(self, node: "Node") -> None:
        self._node = node

    def __contains__(self, short_id: object) -> bool:
        member = self._node.roster.member_by_short_id(short_id) if isinstance(short_id, int) else None
        return member is not None and (member.role == "hq" or member.backup)
