"""The trio driver for the relay tree: feeds link events and tree messages to meshmeet.tree.TreeNode.

Runs the core's timers, sends its output over the node's links (service 0x30), adds "tree" to
status, and answers the `briefing` API with the roster's authority check. This module must never
decide tree shape itself (the core does) and never feed the core anything from a link after that
link's link_down.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Callable

import trio

from ..tree import TreeNode
from ..tree.outputs import Output, TreeChanged
from ..tree.cost import LinkCostInputs
from ..api.contract import ApiError
from ..wire import services
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)

DEFAULT_RTT_S = 0.001


class TreeService:
    """Owns this node's TreeNode and wires it into the node.

    Provides: service byte TREE, the `briefing` API, status["tree"], and `TreeView` (ports.py) to
    the services that route along the tree. Needs: the node's links (send, rtt)."""

    def __init__(self, node: "Node") -> None:
        self.node = node
        self.core = TreeNode(node.key.node_id, node.me.priority, trio.current_time())
        self._wake = trio.Event()
        self.changes = 0
        self._listeners: list[Callable[[TreeChanged], None]] = []  # on_change

    def on_change(self, listener: Callable[[TreeChanged], None]) -> None:
        """`listener(change)` after every change of root, parent or children (it must not raise)."""
        self._listeners.append(listener)

    def provides(self) -> Provides:
        return Provides(services={services.TREE: self._on_message}, link_listeners=(self._on_link_change,),
                        status={"tree": self.status}, apis={"briefing": self._api_briefing})

    def status(self) -> dict:
        out = dict(self.core.status())
        out["changes"] = self.changes
        return out

    # ----- TreeView (ports.py) ---------------------------------------------------------------------

    def root(self) -> str:
        return self.core.root

    def parent(self) -> str | None:
        return self.core.parent

    def children(self) -> frozenset[str]:
        return frozenset(self.core.children)

    def neighbours(self) -> frozenset[str]:
        return frozenset(self.core.tree_neighbours())

    def leads_briefing(self) -> bool:
        return bool(self.core.is_root and self.core.briefing)

    # ----- inputs --------------------------------------------------------------------------------

    def _on_link_change(self, peer: str, up: bool) -> None:
        now = trio.current_time()
        if up:
            rtt_ms = self.node.links.rtt_ms(peer)
            rtt_s = DEFAULT_RTT_S if rtt_ms is None else max(rtt_ms / 1000.0, DEFAULT_RTT_S)
            self._apply(self.core.link_up(peer, LinkCostInputs(rtt_s=rtt_s), now))
        else:
            self._apply(self.core.link_down(peer, now))

    def _on_message(self, peer: str, body: bytes) -> None:
        self._apply(self.core.receive(peer, body, trio.current_time()))

    def _apply(self, out: Output) -> None:
        for peer, body in out.sends:
            if not self.node.send(peer, services.TREE, body):
                log.debug("tree: could not send to %s (link not up or backed up)", peer)
        for event in out.events:
            if isinstance(event, TreeChanged):
                self.changes += 1
                log.info(
                    "tree: root %s parent %s children %d cost %s%s",
                    event.root, event.parent, len(event.children), event.cost, " (briefing)" if event.briefing else "",
                )
                for listener in self._listeners:
                    try:
                        listener(event)
                    except Exception:  # a listener's bug must not stop the tree
                        log.exception("tree listener failed")
            else:
                log.warning("tree: %s", event)
        self._wake.set()

    # ----- timers --------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._wake = trio.Event()
            deadline = self.core.next_deadline()
            with trio.move_on_at(deadline if math.isfinite(deadline) else math.inf):
                await self._wake.wait()
            if trio.current_time() >= deadline:
                self._apply(self.core.handle_timer(trio.current_time()))

    # ----- briefing ------------------------------------------------------------------------------

    async def _api_briefing(self, args: dict) -> dict:
        action = args.get("action")
        if action not in ("start", "stop"):
            raise ApiError(400, "bad_action", "Cần action là start hoặc stop", "action must be start or stop")
        me = self.node.me
        if me.role != "hq" and not me.backup:
            raise ApiError(
                403, "not_authorised",
                "Chỉ trụ sở hoặc điểm dự phòng được chủ trì họp khẩn", "only HQ or a backup site may run a briefing",
            )
        now = trio.current_time()
        self._apply(self.core.start_briefing(now) if action == "start" else self.core.stop_briefing(now))
        return self.status()
