"""The relay-tree core of one node: root election, parent choice, loop freedom, failover (sans-IO).

One TreeNode per node. It is fed link events, received message bytes and the time, and returns the
bytes to send (per peer), events, and when it next needs handle_timer(). Algorithm (docs/tree.md):
every node advertises its route (root, root rank, root-issued seqno, metric) to every neighbour;
it picks the best-ranked root, then the cheapest path, among *feasible* routes only — a neighbour's
(seqno, metric) must be strictly better than the best the node itself has ever used for that seqno
(its feasibility distance, as in Babel) — which keeps the parent graph loop-free at every instant.
A node with no feasible route to a better root is a root itself; a root issues a new seqno every
root_refresh_s (the tree's heartbeat) and when asked by a Request. This module must never do I/O,
read a clock, sleep or keep global state; authority to start a briefing is checked by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cost import LinkCostInputs, cost_changed, link_cost
from .holddown import FlapHistory
from .outputs import ROOT_GC_S, BadMessage, Output, TreeChanged, TreeEvent, TreeTimers
from .messages import FLAG_PARENT, MAX_METRIC, MAX_SEQNO, Request, TreeMessageError, Update, decode, encode

Rank = tuple[int, int, str]   # (briefing epoch, priority, node id): the greater tuple is the better root


@dataclass(frozen=True)
class _Route:
    root: str
    epoch: int
    priority: int
    seqno: int
    metric: int
    parent: str | None

    @property
    def rank(self) -> Rank:
        return (self.epoch, self.priority, self.root)


@dataclass
class _Link:
    cost: int
    usable_at: float
    advert: Update | None = None
    last_sent: Update | None = None


@dataclass
class _Pending:
    root: str
    seqno: int
    peer: str
    retry_at: float


def _better(a: tuple[int, int], b: tuple[int, int] | None) -> bool:
    """Whether (seqno, metric) a is strictly better than b: newer seqno, or same seqno and smaller metric."""
    return b is None or a[0] > b[0] or (a[0] == b[0] and a[1] < b[1])


class TreeNode:
    """The tree state machine of one node. All methods take `now` (monotonic seconds)."""

    def __init__(self, node_id: str, priority: int, now: float, timers: TreeTimers | None = None) -> None:
        self._id = node_id
        self._priority = priority
        self._timers = timers or TreeTimers()
        self._epoch = 0
        self._max_epoch_seen = 0
        self._links: dict[str, _Link] = {}
        self._children: set[str] = set()                    # peers whose latest update names me their parent
        self._flaps: dict[str, FlapHistory] = {}
        self._max_seqno_seen = 0
        self._root_seen: dict[str, tuple[int, float, int, int]] = {}  # root -> (top seqno, when it rose, epoch, priority)
        self._forwarded: dict[str, tuple[int, float]] = {}   # root -> (seqno, when) of the last request sent up
        self._pending: _Pending | None = None
        self._route = _Route(node_id, 0, priority, 1, 0, None)
        self._fd: tuple[int, int] = (1, 0)                  # feasibility distance (seqno, metric)
        self._next_refresh = now + self._timers.root_refresh_s
        self._reported: TreeChanged | None = None
        self._last_now = now

    # ---- read-only view -------------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._id

    @property
    def root(self) -> str:
        return self._route.root

    @property
    def parent(self) -> str | None:
        return self._route.parent

    @property
    def children(self) -> tuple[str, ...]:
        return tuple(sorted(self._children))

    @property
    def cost(self) -> int:
        """Metric of the current route to the root (0 at the root)."""
        return self._route.metric

    @property
    def seqno(self) -> int:
        return self._route.seqno

    @property
    def is_root(self) -> bool:
        return self._route.parent is None

    @property
    def briefing(self) -> bool:
        """Whether the current root is running an emergency briefing."""
        return self._route.epoch > 0

    @property
    def rank(self) -> Rank:
        return (self._epoch, self._priority, self._id)

    @property
    def root_rank(self) -> Rank:
        return self._route.rank

    @property
    def feasibility_distance(self) -> tuple[int, int]:
        return self._fd

    def tree_neighbours(self) -> tuple[str, ...]:
        """Parent and children: the edges a broadcast travels along."""
        children = self.children
        if self._route.parent is not None and self._route.parent not in children:
            return (self._route.parent, *children)
        return children

    def status(self) -> dict[str, object]:
        """The "tree" object of `meshmeet status --json`."""
        return {
            "root": self.root,
            "parent": self.parent,
            "children": list(self.children),
            "cost": self.cost,
            "seqno": self.seqno,
            "briefing": self.briefing,
        }

    # ---- inputs ---------------------------------------------------------------------------------

    def link_up(self, peer: str, cost_inputs: LinkCostInputs, now: float) -> Output:
        """A link to `peer` is established (after the handshake)."""
        if peer == self._id:
            return Output()
        if peer in self._links:
            return self._set_cost(peer, link_cost(cost_inputs), now, force=True)
        history = self._flaps.setdefault(peer, FlapHistory())
        self._links[peer] = _Link(cost=link_cost(cost_inputs), usable_at=history.usable_at(now, self._timers.holddown))
        return self._after(now)

    def link_down(self, peer: str, now: float) -> Output:
        """The link to `peer` closed or timed out."""
        if self._links.pop(peer, None) is None:
            return Output()
        self._children.discard(peer)
        self._flaps.setdefault(peer, FlapHistory()).record_down(now)
        if self._pending is not None and self._pending.peer == peer:
            self._pending = None
        return self._after(now)

    def link_metrics(self, peer: str, rtt_s: float, loss: float, capacity_bps: float, metered: bool, now: float) -> Output:
        """New measurements for the link to `peer`; the cost moves only on a significant change."""
        if peer not in self._links:
            return Output()
        return self._set_cost(peer, link_cost(LinkCostInputs(rtt_s, loss, capacity_bps, metered)), now, force=False)

    def receive(self, peer: str, data: bytes, now: float) -> Output:
        """Bytes of one tree message from `peer`. Malformed bytes give a BadMessage event."""
        try:
            message = decode(data)
        except TreeMessageError as exc:
            return Output(events=(BadMessage(peer, exc.en),))
        link = self._links.get(peer)
        if link is None:
            return Output()
        if isinstance(message, Update):
            return self._on_update(peer, link, message, now)
        return self._on_request(peer, message, now)

    def handle_timer(self, now: float) -> Output:
        """Call at (or after) next_deadline()."""
        if self.is_root and now >= self._next_refresh:
            self._bump(self._route.seqno + 1, now)
        self._gc(now)
        return self._after(now)

    def next_deadline(self) -> float:
        """When handle_timer() must next be called."""
        deadlines = []
        if self.is_root:
            deadlines.append(self._next_refresh)
        else:
            seen = self._root_seen.get(self._route.root)
            deadlines.append((seen[1] if seen else 0.0) + self._timers.root_timeout_s)
        if self._pending is not None:
            deadlines.append(self._pending.retry_at)
        held = [link.usable_at for link in self._links.values() if link.advert is not None and link.usable_at > self._last_now]
        deadlines.extend(held)
        return min(deadlines)

    def start_briefing(self, now: float) -> Output:
        """Become the root at once for an emergency briefing (the caller has checked authority)."""
        self._epoch = self._max_epoch_seen + 1
        self._max_epoch_seen = self._epoch
        return self._after(now)

    def stop_briefing(self, now: float) -> Output:
        """End this node's briefing; the tree returns to the best root by priority."""
        if self._epoch == 0:
            return Output()
        self._epoch = 0
        return self._after(now)

    # ---- internals ------------------------------------------------------------------------------

    def _set_cost(self, peer: str, cost: int, now: float, *, force: bool) -> Output:
        link = self._links[peer]
        if cost != link.cost and (force or cost_changed(link.cost, cost)):
            link.cost = cost
            return self._after(now)
        return Output()

    def _note(self, update: Update, now: float) -> None:
        self._max_seqno_seen = max(self._max_seqno_seen, update.seqno)
        self._max_epoch_seen = max(self._max_epoch_seen, update.epoch)
        if update.root != self._id:
            seen = self._root_seen.get(update.root)
            if seen is None or update.seqno > seen[0]:
                self._root_seen[update.root] = (update.seqno, now, update.epoch, update.priority)

    def _rank_of(self, update: Update) -> Rank:
        """A root's rank as its newest seqno says (a slow link may still carry an older rank)."""
        seen = self._root_seen.get(update.root)
        if seen is None:
            return (update.epoch, update.priority, update.root)
        return (seen[2], seen[3], update.root)

    def _on_update(self, peer: str, link: _Link, update: Update, now: float) -> Output:
        self._note(update, now)
        link.advert = update
        if update.flags & FLAG_PARENT:
            self._children.add(peer)
        else:
            self._children.discard(peer)
        if self.is_root:
            mine = self._route.seqno
            if update.root == self._id:
                if update.seqno > mine:        # news of my own earlier life: move past it
                    self._bump(update.seqno + 1, now)
            elif self._rank_of(update) < self.rank and update.seqno >= mine:
                self._bump(update.seqno + 1, now)  # a lesser root is ahead: let its nodes join me
        return self._after(now)

    def _on_request(self, peer: str, request: Request, now: float) -> Output:
        route = self._route
        if request.root == self._id:
            if self.is_root and request.seqno > route.seqno:
                self._bump(max(request.seqno, self._max_seqno_seen + 1), now)
            return self._after(now)
        if route.root != request.root or route.parent is None:
            return self._after(now)
        if route.seqno >= request.seqno:
            link = self._links.get(peer)
            if link is not None:
                link.last_sent = None            # re-send my (fresh enough) route to the asker
            return self._after(now)
        last = self._forwarded.get(request.root)
        if last is None or request.seqno > last[0] or now - last[1] >= self._timers.request_retry_s:
            self._forwarded[request.root] = (request.seqno, now)
            return self._after(now, extra=((route.parent, encode(Request(request.root, request.seqno))),))
        return self._after(now)

    def _bump(self, seqno: int, now: float) -> None:
        """As root: issue `seqno` (strictly newer than the current one)."""
        seqno = min(max(seqno, self._route.seqno + 1), MAX_SEQNO)
        self._route = _Route(self._id, self._epoch, self._priority, seqno, 0, None)
        self._max_seqno_seen = max(self._max_seqno_seen, seqno)
        self._fd = (seqno, 0)
        self._next_refresh = now + self._timers.root_refresh_s

    def _alive(self, root: str, now: float) -> bool:
        seen = self._root_seen.get(root)
        return seen is not None and now - seen[1] < self._timers.root_timeout_s

    def _select(self, now: float) -> None:
        """Choose the route: best root rank, then cheapest metric, among feasible routes; else be root."""
        current = self._route
        best: tuple | None = None
        for peer, link in self._links.items():
            adv = link.advert
            if adv is None or now < link.usable_at or adv.root == self._id or adv.is_parent_flag:
                continue
            metric = adv.metric + link.cost
            if metric >= MAX_METRIC or not self._alive(adv.root, now):
                continue
            if not _better((adv.seqno, adv.metric), self._fd):
                continue
            key = (self._rank_of(adv), -metric, peer == current.parent, peer)
            if best is None or key > best:
                best = key
        if best is not None and best[0] > self.rank:
            (epoch, priority, root), neg_metric, _, peer = best
            adv = self._links[peer].advert
            assert adv is not None
            self._route = _Route(root, epoch, priority, adv.seqno, -neg_metric, peer)
            self._fd = max(self._fd, (adv.seqno, -neg_metric), key=lambda sm: (sm[0], -sm[1]))
            return
        if current.parent is None and current.rank == self.rank:
            return                                # already root with this rank
        if current.parent is None:               # rank changed (briefing): re-issue with the new rank
            self._bump(max(self._max_seqno_seen, current.seqno) + 1, now)
            return
        self._bump(max(self._max_seqno_seen, self._fd[0]) + 1, now)

    def _want_request(self, now: float, sends: list[tuple[str, bytes]]) -> None:
        """Ask for a newer seqno when a better root is only reachable through unfeasible routes."""
        mine = self._route.rank
        target: tuple | None = None
        for peer, link in self._links.items():
            adv = link.advert
            if adv is None or now < link.usable_at or adv.root == self._id or adv.is_parent_flag:
                continue
            rank = self._rank_of(adv)
            if rank <= mine or adv.metric + link.cost >= MAX_METRIC or not self._alive(adv.root, now):
                continue
            key = (rank, -(adv.metric + link.cost), peer)
            if target is None or key > target:
                target = key
        if target is None:
            self._pending = None
            return
        root, peer = target[0][2], target[2]
        want = self._fd[0] + 1
        pending = self._pending
        if pending is not None and pending.root == root and pending.seqno >= want and now < pending.retry_at:
            return
        self._pending = _Pending(root, want, peer, now + self._timers.request_retry_s)
        sends.append((peer, encode(Request(root, want))))

    def _gc(self, now: float) -> None:
        keep = {link.advert.root for link in self._links.values() if link.advert is not None}
        keep.add(self._route.root)
        for root, seen in list(self._root_seen.items()):
            if root not in keep and now - seen[1] > ROOT_GC_S:
                del self._root_seen[root]
        for root, (_, when) in list(self._forwarded.items()):
            if now - when > ROOT_GC_S:
                del self._forwarded[root]

    def _after(self, now: float, extra: tuple[tuple[str, bytes], ...] = ()) -> Output:
        """Re-select, then emit route updates (only where changed), requests and events."""
        self._last_now = now
        self._select(now)
        requests = list(extra)
        self._want_request(now, requests)
        route = self._route
        sends: list[tuple[str, bytes]] = []
        plain = Update(route.root, route.epoch, route.priority, route.seqno, route.metric, 0)
        plain_bytes: bytes | None = None
        for peer, link in self._links.items():
            if peer == route.parent:
                update = Update(route.root, route.epoch, route.priority, route.seqno, route.metric, FLAG_PARENT)
                if update != link.last_sent:
                    link.last_sent = update
                    sends.append((peer, encode(update)))
            elif plain != link.last_sent:
                link.last_sent = plain
                if plain_bytes is None:
                    plain_bytes = encode(plain)
                sends.append((peer, plain_bytes))
        sends.extend(requests)
        events: tuple[TreeEvent, ...] = ()
        state = TreeChanged(route.root, route.parent, self.children, route.metric, route.seqno, route.epoch > 0,
                            route.priority, route.epoch)
        reported = self._reported
        if reported is None or reported.shape() != state.shape():
            self._reported = state
            events = (state,)
        return Output(tuple(sends), events)
