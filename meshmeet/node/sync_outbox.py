"""What waits to go out to each sync peer, and when it may enter that peer's link.

Each up link has two queues: live messages (version vectors, batches, wants) and bulk ones
(document chunk pieces, ~60 kB each). `feed` moves them into the link's writer queue: live ones
while it holds fewer than LIVE_QUEUE_MAX_MESSAGES, chunk pieces only when no live message waits
and it holds fewer than BULK_QUEUE_MAX_MESSAGES, so a chunk never sits in front of live traffic.
A test hook (`pace_pieces_per_s`, the `sync_test_pace` API) caps the rate of chunk pieces.

This module must never decide what to send (the SyncSession does), never wait on a link (a
full writer queue is retried after BUSY_POLL_S by the caller), and never touch the store.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..api.contract import ApiError
from ..sync.events import Outgoing

LIVE_QUEUE_MAX_MESSAGES = 512  # live sync messages allowed to wait in a link's writer queue
BULK_QUEUE_MAX_MESSAGES = 4    # chunk pieces (60 kB each) allowed in a link's writer queue
BUSY_POLL_S = 0.005            # retry a link whose writer queue was too full after this long


@dataclass
class _Queues:
    live: deque[bytes] = field(default_factory=deque)
    bulk: deque[bytes] = field(default_factory=deque)


class SyncOutbox:
    """The per-peer queues. `queue_depth(peer)` is the link's writer queue length, `send(peer, body)`
    hands one sync message to the link (False: not now), `now()` the trio clock."""

    def __init__(self, queue_depth: Callable[[str], int], send: Callable[[str, bytes], bool],
                 now: Callable[[], float]) -> None:
        self._queue_depth = queue_depth
        self._send = send
        self._now = now
        self._queues: dict[str, _Queues] = {}
        self.pace_pieces_per_s: float | None = None  # test hook: cap on chunk pieces sent per second
        self._pace_next = 0.0

    def open(self, peer: str) -> None:
        """A session started with `peer`: empty queues."""
        self._queues[peer] = _Queues()

    def drop(self, peer: str) -> None:
        """The session with `peer` ended: what waited for it is gone."""
        self._queues.pop(peer, None)

    def put(self, peer: str, out: list[Outgoing]) -> bool:
        """Queue a session's output for `peer`; True if anything was queued (the caller wakes)."""
        q = self._queues.get(peer)
        if q is None:
            return False
        for o in out:
            (q.bulk if o.bulk else q.live).append(o.data)
        return bool(out)

    def feed(self) -> bool:
        """Move queued messages into the links' writer queues; True if some must wait."""
        waiting = False
        for peer, q in self._queues.items():
            depth = self._queue_depth(peer)
            while q.live and depth < LIVE_QUEUE_MAX_MESSAGES:
                if not self._send(peer, q.live[0]):
                    break
                q.live.popleft()
                depth += 1
            while q.bulk and not q.live and depth < BULK_QUEUE_MAX_MESSAGES and self._paced():
                if not self._send(peer, q.bulk[0]):
                    break
                q.bulk.popleft()
                depth += 1
                if self.pace_pieces_per_s:
                    self._pace_next = max(self._pace_next, self._now()) + 1.0 / self.pace_pieces_per_s
            waiting = waiting or bool(q.live or q.bulk)
        return waiting

    def api_test_pace(self, args: dict) -> dict:
        """The `sync_test_pace` API (only with MESHMEET_TEST_HOOKS=1): set or lift the cap."""
        rate = args.get("pieces_per_s")
        if rate is not None and (type(rate) not in (int, float) or rate <= 0):
            raise ApiError(400, "bad_request", "pieces_per_s phải > 0 hoặc null", "pieces_per_s must be > 0 or null")
        self.pace_pieces_per_s = None if rate is None else float(rate)
        return {"pieces_per_s": self.pace_pieces_per_s}

    def _paced(self) -> bool:
        return not self.pace_pieces_per_s or self._now() >= self._pace_next

    def queued(self, peer: str) -> tuple[int, int]:
        """(live, bulk) messages waiting for `peer`."""
        q = self._queues.get(peer)
        return (0, 0) if q is None else (len(q.live), len(q.bulk))
