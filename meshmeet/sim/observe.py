"""Observers for the simulator: the loop check, the "is the tree whole" convergence tracker, and the
shape of what is up (connected components, the tree's depth).

The loop check and the tracker work incrementally from the nodes whose tree state changed in a
step, so the simulator can check after every delivered message even with 1,000 nodes. This module
must never change the nodes it looks at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol


class TreeView(Protocol):
    """What the observers need to know about one node's core."""

    @property
    def root(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def children(self) -> tuple[str, ...]: ...
    @property
    def rank(self) -> tuple[int, int, str]: ...
    @property
    def root_rank(self) -> tuple[int, int, str]: ...


def find_loop(start: str, cores: dict[str, TreeView | None]) -> list[str] | None:
    """Follow parent pointers from `start`; return the cycle if one is reached, else None.

    Called for every node whose parent changed in a step: a cycle that appears in a step must go
    through a node whose pointer changed in it, so this is the same as checking every node.
    """
    seen: dict[str, int] = {}
    path: list[str] = []
    node: str | None = start
    while node is not None:
        if node in seen:
            return path[seen[node]:]
        seen[node] = len(path)
        path.append(node)
        core = cores.get(node)
        node = core.parent if core is not None else None
    return None


def tree_depth(cores: dict[str, TreeView | None]) -> int:
    """Longest parent chain among live nodes (0 when every node is a root)."""
    memo: dict[str, int] = {}

    def walk(node: str) -> int:
        chain = []
        cur: str | None = node
        while cur is not None and cur not in memo and len(chain) <= len(cores):
            chain.append(cur)
            core = cores.get(cur)
            cur = core.parent if core is not None else None
        base = memo.get(cur, -1) if cur is not None else -1
        for n in reversed(chain):
            base += 1
            memo[n] = base
        return memo[node]

    return max((walk(n) for n, c in cores.items() if c is not None), default=0)


def components(cores: dict[str, TreeView | None], adjacent: dict[str, list[str]],
               link_up: Callable[[str, str], bool]) -> list[list[str]]:
    """The live nodes in groups that reach each other over links that are physically up."""
    seen: set[str] = set()
    out = []
    for start, core in cores.items():
        if core is None or start in seen:
            continue
        comp, stack = [], [start]
        seen.add(start)
        while stack:
            n = stack.pop()
            comp.append(n)
            for m in adjacent[n]:
                if m not in seen and link_up(n, m):
                    seen.add(m)
                    stack.append(m)
        out.append(comp)
    return out


def any_loop(cores: dict[str, TreeView | None]) -> list[str] | None:
    """Full check of every node (used by tests to confirm the incremental check)."""
    for node in cores:
        cycle = find_loop(node, cores)
        if cycle:
            return cycle
    return None


class ConvergenceTracker:
    """Tracks the set of "bad" nodes; the tree is whole (converged) when that set is empty.

    A live node is good when it agrees on its component's best root (and that root's current rank,
    so a briefing shows everywhere), its parent (unless it is the
    root) is a neighbour over a link that is physically up, and its children are exactly the
    nodes that point at it.
    """

    def __init__(self, cores: dict[str, TreeView | None], link_up: Callable[[str, str], bool]) -> None:
        self._cores = cores
        self._link_up = link_up
        self._best: dict[str, str] = {}
        self.bad: set[str] = set()

    def set_components(self, components: Iterable[list[str]]) -> None:
        """After a topology change: the live components; recomputes every node."""
        self._best = {}
        for component in components:
            best = max(component, key=lambda n: self._cores[n].rank)  # type: ignore[union-attr]
            for node in component:
                self._best[node] = best
        self.bad = {n for n in self._best if not self._good(n)}

    def best_root(self, node: str) -> str | None:
        return self._best.get(node)

    def touch(self, nodes: Iterable[str]) -> None:
        for node in nodes:
            if node not in self._best:
                self.bad.discard(node)
            elif self._good(node):
                self.bad.discard(node)
            else:
                self.bad.add(node)

    def _good(self, node: str) -> bool:
        core = self._cores.get(node)
        if core is None:
            return True
        best = self._best[node]
        best_core = self._cores.get(best)
        if best_core is None or core.root != best or core.root_rank != best_core.rank:
            return False          # (a dead best root: components are about to be recomputed)
        parent = core.parent
        if node == best:
            if parent is not None:
                return False
        else:
            if parent is None or not self._link_up(node, parent):
                return False
            parent_core = self._cores.get(parent)
            if parent_core is None or node not in parent_core.children:
                return False
        for child in core.children:
            child_core = self._cores.get(child)
            if child_core is None or child_core.parent != node:
                return False
        return True
