"""What arrived for sync, in arrival order, until the sync loop takes it under the store lock.

Link callbacks must not block, and the store may only be touched inside the sync lock, so they
only queue here and wake the loop: a message (`message`), a link up or down (`link_changed`), a
peer's accepted batch formats (`formats`). `take` hands them back in order, with the messages one
peer sent meanwhile taken together (at most RECEIVE_GROUP_MAX_MESSAGES), so that their batches
commit in one transaction. This module must never look inside a message or touch a session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

RECEIVE_GROUP_MAX_MESSAGES = 16  # messages from one peer handled (batches committed) together


@dataclass(frozen=True)
class Arrival:
    """One thing to handle: kind "up", "down", "formats" (`formats`, `swarm` set) or "msg" (`bodies`)."""

    kind: str
    peer: str
    bodies: list[bytes] = field(default_factory=list)
    formats: frozenset[int] = frozenset()
    swarm: bool = False  # the peer announced feature swarm/1 (sync/swarm.py)


class SyncInbox:
    """The queue between link callbacks and the sync loop; `wake()` is called on every arrival."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._items: deque[tuple[str, str, object]] = deque()

    def message(self, peer: str, body: bytes) -> None:
        self._items.append(("msg", peer, body))
        self._wake()

    def link_changed(self, peer: str, up: bool) -> None:
        self._items.append(("up" if up else "down", peer, None))
        self._wake()

    def formats(self, peer: str, batch_versions: frozenset[int], swarm: bool = False) -> None:
        self._items.append(("formats", peer, (frozenset(v for v in batch_versions if 0 <= v < 256), swarm)))
        self._wake()

    def __bool__(self) -> bool:
        return bool(self._items)

    def take(self) -> Arrival:
        """The next arrival (call only while the inbox is not empty)."""
        kind, peer, item = self._items.popleft()
        if kind == "formats":
            assert isinstance(item, tuple)
            return Arrival(kind, peer, formats=item[0], swarm=item[1])
        if kind != "msg":
            return Arrival(kind, peer)
        assert isinstance(item, bytes)
        bodies = [item]  # what else this peer sent that is waiting: its batches commit together
        while (self._items and len(bodies) < RECEIVE_GROUP_MAX_MESSAGES
               and self._items[0][0] == "msg" and self._items[0][1] == peer):
            body = self._items.popleft()[2]
            assert isinstance(body, bytes)
            bodies.append(body)
        return Arrival(kind, peer, bodies)
