"""The small interfaces node services need from each other, named so the composition root can wire them.

A service receives what it needs as constructor arguments typed by these protocols (see
`compose.py`), never by looking another service up by class name or reading its internals.
This module must never hold state or import a service: it only names the methods one service
may call on another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable, Protocol, TypeVar

from ..store.db import Store

if TYPE_CHECKING:
    from ..tree.outputs import TreeChanged

T = TypeVar("T")


class TreeView(Protocol):
    """What the relay tree tells other services (provided by `TreeService`)."""

    def root(self) -> str:
        """The node id of the tree's root (this node's own id when alone)."""
        ...

    def parent(self) -> str | None:
        """This node's parent, None at the root."""
        ...

    def children(self) -> frozenset[str]:
        """This node's children."""
        ...

    def neighbours(self) -> frozenset[str]:
        """Parent and children: the links media and tree broadcasts travel on."""
        ...

    def leads_briefing(self) -> bool:
        """Whether this node is the root of a briefing tree (an emergency meeting without HQ)."""
        ...

    def on_change(self, listener: "Callable[[TreeChanged], None]") -> None:
        """`listener` is called after every change of root, parent or children (it must not raise)."""
        ...


class StateReader(Protocol):
    """Read access to the replicated store (provided by `SyncService`, which alone writes it)."""

    async def read(self, query: Callable[[Store], T]) -> T:
        """Run `query` on the store while no sync write is in progress."""
        ...

    def read_nowait(self, query: Callable[[Store], T]) -> T | None:
        """`query`'s answer now, or None when the store is busy (for callers that must not wait)."""
        ...

    def on_tables_changed(self, listener: Callable[[list[str]], None]) -> None:
        """`listener(tables)` after each change to the store (with its lock held: it must not block)."""
        ...


AlertSender = Callable[[dict], Awaitable[dict]]  # the lora_alert API handler (provided by LoraService)
