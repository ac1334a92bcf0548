"""What a TreeNode is set up with and what it gives back: timer settings, outputs and events.

`TreeTimers` (defaults are production's), `Output` (messages to send and events) and the events
`TreeChanged` and `BadMessage`. This module must never hold behaviour: only the shapes core.py
takes and returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .holddown import HoldDownPolicy

ROOT_REFRESH_S = 10.0    # a root issues a new seqno this often: the only steady-state traffic
ROOT_TIMEOUT_S = 35.0    # a root whose seqno has not advanced for this long is considered gone
REQUEST_RETRY_S = 1.0    # an unanswered seqno request is repeated this often
ROOT_GC_S = 4 * ROOT_TIMEOUT_S  # forget roots unheard of for this long

@dataclass(frozen=True)
class TreeTimers:
    """Timer settings of the tree core (defaults are the production ones)."""

    root_refresh_s: float = ROOT_REFRESH_S
    root_timeout_s: float = ROOT_TIMEOUT_S
    request_retry_s: float = REQUEST_RETRY_S
    holddown: HoldDownPolicy = field(default_factory=HoldDownPolicy)


@dataclass(frozen=True)
class TreeChanged:
    """This node's place in the tree changed (root, parent, children, or the root's priority or briefing)."""

    root: str
    parent: str | None
    children: tuple[str, ...]
    cost: int
    seqno: int
    briefing: bool
    root_priority: int = 0
    briefing_epoch: int = 0

    def shape(self) -> tuple[object, ...]:
        """What counts as a change of the tree (cost and seqno move all the time and do not)."""
        return (self.root, self.parent, self.children, self.root_priority, self.briefing_epoch)


@dataclass(frozen=True)
class BadMessage:
    """A peer sent bytes that are not a valid tree message (the caller may log or close the link)."""

    peer: str
    reason: str


TreeEvent = TreeChanged | BadMessage


@dataclass(frozen=True)
class Output:
    """What one call produced: messages to send (peer, bytes) and events."""

    sends: tuple[tuple[str, bytes], ...] = ()
    events: tuple[TreeEvent, ...] = ()


